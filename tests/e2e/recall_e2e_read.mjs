// Reads a node's Recall badge from what the page shows, never from the pack's own state:
// - canvas mode: the canvas is redrawn while its fillText calls are recorded (the page's init
//   script in recall_e2e.mjs), and the badge's pixels are read back from the canvas;
// - Vue nodes: the rendered DOM of the node element, its geometry and what is on top.
const BADGE_TEXT = /^(HIT|MISS|Recall off|ERROR)/;

export async function canvasBadges(page, nodeId) {
  return await page.evaluate(({ id, pattern }) => {
    const { app } = window.comfyAPI.app;
    const node = app.graph.getNodeById(Number(id)) ?? app.graph.getNodeById(id);
    const canvas = app.canvas.canvas;
    window.__recallDrawn = [];
    app.canvas.draw(true, true);
    const drawn = window.__recallDrawn.filter((d) => d.canvas === canvas);
    window.__recallDrawn = null;
    const ctx = canvas.getContext("2d");
    const ratio = canvas.width / canvas.clientWidth; // backing-store pixels per CSS pixel
    const scale = app.canvas.ds.scale;
    const [nx, ny] = app.canvas.ds.convertOffsetToCanvas(node.pos).map((v) => v * ratio);
    const titleTop = ny - window.LiteGraph.NODE_TITLE_HEIGHT * scale * ratio;
    const re = new RegExp(pattern);
    const badges = drawn.filter((d) => re.test(d.text)).map((d) => {
      const fontPx = parseFloat(/(\d+(?:\.\d+)?)px/.exec(d.font)?.[1] ?? "NaN");
      // the badge's own background, just left of its text
      const [r, g, b] = ctx.getImageData(Math.round(d.x - 3 * d.scale), Math.round(d.y), 1, 1).data;
      return {
        text: d.text,
        text_left: d.x,
        node_left: nx,
        // the pill starts one padding (7 px at zoom 1) left of the text
        badge_left: d.x - 7 * d.scale,
        // text is centred in a 22 px pill (1 px low)
        badge_bottom: d.y - 1 * d.scale + 11 * d.scale,
        title_top: titleTop,
        font_px_on_screen: (fontPx * d.scale) / ratio,
        background: [r, g, b],
      };
    });
    const title = drawn.find((d) => d.text === node.title) ?? null;
    return { mode: "canvas", texts: badges.map((b) => b.text), badges, zoom: scale,
      title_drawn: title ? title.text : drawn.filter((d) => node.title.startsWith(d.text.replace(/…$/, ""))).map((d) => d.text)[0] ?? null };
  }, { id: nodeId, pattern: BADGE_TEXT.source });
}

export async function vueBadges(page, nodeId) {
  return await page.evaluate(({ id, pattern }) => {
    const host = document.querySelector(`.lg-node[data-node-id="${id}"]`);
    if (!host) return { mode: "vue", texts: [], error: "no Vue node element" };
    const re = new RegExp(pattern);
    const rect = (e) => {
      const r = e.getBoundingClientRect();
      return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
    };
    // every badge-looking text the node shows, wherever it is rendered
    const texts = [...host.querySelectorAll("*")].filter((e) => e.children.length === 0 && re.test(e.textContent.trim()))
      .map((e) => e.textContent.trim());
    const badge = host.querySelector(".recall-node-badge");
    const title = host.querySelector('[data-testid="node-title"]');
    const titleText = title?.querySelector(".truncate") ?? title;
    let onTop = null;
    if (badge) {
      const r = badge.getBoundingClientRect();
      const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      onTop = hit === badge || badge.contains(hit);
    }
    return {
      mode: "vue",
      texts,
      badge: badge ? { text: badge.textContent.trim(), rect: rect(badge), font_px: parseFloat(getComputedStyle(badge).fontSize),
        background: getComputedStyle(badge).backgroundColor, on_top: onTop } : null,
      node: rect(host),
      header: title ? rect(title) : null,
      title: titleText ? { text: titleText.textContent.trim(), truncated: titleText.scrollWidth > titleText.clientWidth + 1 } : null,
      zoom: window.comfyAPI.app.app.canvas.ds.scale,
    };
  }, { id: nodeId, pattern: BADGE_TEXT.source });
}
