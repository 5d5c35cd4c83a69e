// Builds the example workflows in workflows/ inside the real ComfyUI page (headless Chromium):
// each graph is made with LiteGraph (createNode, connect, widget values) exactly as a user would
// build it, then saved with app.graph.serialize() and photographed for the template browser
// (both frontends ask custom-node templates for "<name>.jpg" and show it in a square card).
//
//   node build_workflows.mjs --url http://127.0.0.1:PORT --out ../../workflows [--only name]
//
// tests/support/build_workflows.py starts a server with the pack and runs this; the specs
// below are the single source of the example graphs.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { parseArgs } from "node:util";

// playwright-core is installed once, for the page tests, in tests/e2e/node_modules.
const require = createRequire(new URL("../e2e/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    out: { type: "string" },
    only: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// A spec: title and description (the template browser's card, through js/recall_templates.js),
// nodes {key: [type, [x, y], {widget: value}, [w, h]?]}, links [[from, outSlot, to, inputName]],
// note (the Read me: paragraphs the Note node wraps itself, placed at noteAt), and focus: the
// nodes the preview shows (a whole graph at card size is unreadable).
const NEGATIVE = "blurry, low quality, distorted, watermark";
const SPECS = {
  svd_img2vid_recall: {
    title: "SVD: the image encoded once",
    description: "Change frames, motion or fps: the image is not encoded again.",
    focus: ["cond"],
    note: [
      "Stable Video Diffusion turns the picture in Load Image into a short clip. SVD Img2Vid Conditioning (Recall) does what the core node does, but remembers the picture's CLIP-vision and VAE encodings by its pixels: change video_frames, motion_bucket_id, fps or the seed, queue again, and the picture is not encoded again (the node's badge says HIT and the time saved).",
      "Model: models/checkpoints/svd_xt.safetensors (or svd.safetensors with video_frames 14).",
      "Try: another image in Load Image; width and height (1024 x 576 is SVD's own size); video_frames, motion_bucket_id, fps, augmentation_level.",
    ].join("\n\n"),
    noteAt: [40, 600],
    nodes: {
      ckpt: ["ImageOnlyCheckpointLoader", [40, 60], { ckpt_name: "svd_xt.safetensors" }, [330, 100]],
      image: ["LoadImage", [40, 200], { image: "example.png" }, [330, 200]],
      cond: ["RecallSVDImg2VidConditioning", [420, 200], {
        width: 1024, height: 576, video_frames: 25, motion_bucket_id: 127, fps: 6,
        augmentation_level: 0.0, seed: 0, control_after_generate: "fixed" }, [320, 320]],
      guide: ["VideoLinearCFGGuidance", [420, 40], { min_cfg: 1.0 }, [320, 60]],
      sampler: ["KSampler", [790, 40], { seed: 42, control_after_generate: "fixed", steps: 20, cfg: 2.5,
        sampler_name: "euler", scheduler: "karras", denoise: 1.0 }, [300, 262]],
      decode: ["VAEDecode", [1130, 40], {}, [210, 50]],
      save: ["SaveAnimatedWEBP", [1130, 140], { filename_prefix: "svd_recall", fps: 10, lossless: false,
        quality: 85, method: "default" }, [300, 360]],
    },
    links: [["ckpt", 0, "guide", "model"], ["ckpt", 1, "cond", "clip_vision"], ["image", 0, "cond", "init_image"],
      ["ckpt", 2, "cond", "vae"], ["guide", 0, "sampler", "model"], ["cond", 0, "sampler", "positive"],
      ["cond", 1, "sampler", "negative"], ["cond", 2, "sampler", "latent_image"], ["sampler", 0, "decode", "samples"],
      ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
  wan_i2v_recall: {
    title: "Wan 2.1 image to video",
    description: "Edit the prompt and queue again: the image is not re-encoded.",
    focus: ["i2v"],
    note: [
      "Wan 2.1 animates the picture in Load Image following the prompt. The Recall nodes remember the picture's CLIP-vision and VAE encodings and each prompt's text encoding by content: edit the prompt and queue again, and only the new text is encoded, not the picture.",
      "Models: models/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors (or the 720p or fp8 file), models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors, models/vae/wan_2.1_vae.safetensors, models/clip_vision/clip_vision_h.safetensors.",
      "Try: another image; the prompt; width, height and length (length is 4k+1 frames: 33, 49, 81).",
    ].join("\n\n"),
    noteAt: [440, 650],
    nodes: {
      unet: ["UNETLoader", [40, 40], { unet_name: "wan2.1_i2v_480p_14B_fp16.safetensors", weight_dtype: "default" }, [360, 82]],
      shift: ["ModelSamplingSD3", [440, 40], { shift: 8.0 }, [260, 60]],
      clip: ["CLIPLoader", [40, 160], { clip_name: "umt5_xxl_fp8_e4m3fn_scaled.safetensors", type: "wan",
        device: "default" }, [360, 106]],
      pos: ["RecallCLIPTextEncode", [440, 180], { text: "a fox running through fresh snow, cinematic, soft light" }, [400, 110]],
      neg: ["RecallCLIPTextEncode", [440, 360], { text: NEGATIVE }, [400, 100]],
      vision: ["CLIPVisionLoader", [40, 310], { clip_name: "clip_vision_h.safetensors" }, [360, 58]],
      image: ["LoadImage", [40, 400], { image: "example.png" }, [360, 260]],
      venc: ["RecallCLIPVisionEncode", [440, 520], { crop: "none" }, [300, 80]],
      vae: ["VAELoader", [40, 700], { vae_name: "wan_2.1_vae.safetensors" }, [300, 58]],
      i2v: ["RecallWanImageToVideo", [880, 300], { width: 512, height: 512, length: 33, batch_size: 1 }, [320, 220]],
      sampler: ["KSampler", [1240, 40], { seed: 42, control_after_generate: "fixed", steps: 20, cfg: 6.0,
        sampler_name: "uni_pc", scheduler: "simple", denoise: 1.0 }, [300, 262]],
      decode: ["VAEDecode", [1240, 340], {}, [210, 50]],
      save: ["SaveAnimatedWEBP", [1580, 40], { filename_prefix: "wan_i2v_recall", fps: 16, lossless: false,
        quality: 90, method: "default" }, [300, 360]],
    },
    links: [["unet", 0, "shift", "model"], ["shift", 0, "sampler", "model"], ["clip", 0, "pos", "clip"],
      ["clip", 0, "neg", "clip"], ["vision", 0, "venc", "clip_vision"], ["image", 0, "venc", "image"],
      ["pos", 0, "i2v", "positive"], ["neg", 0, "i2v", "negative"], ["vae", 0, "i2v", "vae"],
      ["venc", 0, "i2v", "clip_vision_output"], ["image", 0, "i2v", "start_image"],
      ["i2v", 0, "sampler", "positive"], ["i2v", 1, "sampler", "negative"], ["i2v", 2, "sampler", "latent_image"],
      ["sampler", 0, "decode", "samples"], ["vae", 0, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
  sd15_lcm_lora_4step: {
    title: "SD1.5 in 4 steps with LCM-LoRA",
    description: "One node loads the LCM-LoRA: an image in 4 steps at cfg 1.5.",
    focus: ["ckpt", "lcm"],
    note: [
      "LCM-LoRA Loader (Recall) applies an LCM-LoRA to the model and switches it to LCM sampling in one node, so the KSampler makes an image in 4 steps instead of 25.",
      "Models: models/checkpoints/v1-5-pruned-emaonly.safetensors (any SD1.5 checkpoint) and models/loras/lcm-lora-sdv1-5.safetensors (from latent-consistency/lcm-lora-sdv1-5: rename its pytorch_lora_weights.safetensors). For SDXL use lcm-lora-sdxl, for SSD-1B lcm-lora-ssd-1b.",
      "Keep the sampler on lcm and the scheduler on sgm_uniform, with 2 to 8 steps and cfg 1.0 to 2.0: a higher cfg burns the image.",
    ].join("\n\n"),
    noteAt: [40, 470],
    nodes: {
      ckpt: ["CheckpointLoaderSimple", [40, 60], { ckpt_name: "v1-5-pruned-emaonly.safetensors" }, [330, 100]],
      lcm: ["RecallLCMLoraLoader", [40, 240], { lora_name: "lcm-lora-sdv1-5.safetensors", strength_model: 1.0,
        strength_clip: 1.0, set_lcm_sampling: true }, [330, 160]],
      pos: ["CLIPTextEncode", [420, 40], { text: "a lighthouse on a cliff at dusk, detailed oil painting" }, [400, 140]],
      neg: ["CLIPTextEncode", [420, 220], { text: NEGATIVE }, [400, 120]],
      latent: ["EmptyLatentImage", [420, 380], { width: 512, height: 512, batch_size: 1 }, [300, 106]],
      sampler: ["KSampler", [860, 40], { seed: 42, control_after_generate: "fixed", steps: 4, cfg: 1.5,
        sampler_name: "lcm", scheduler: "sgm_uniform", denoise: 1.0 }, [300, 262]],
      decode: ["VAEDecode", [1200, 40], {}, [210, 50]],
      save: ["SaveImage", [1200, 140], { filename_prefix: "sd15_lcm_4step" }, [320, 320]],
    },
    links: [["ckpt", 0, "lcm", "model"], ["ckpt", 1, "lcm", "clip"], ["lcm", 1, "pos", "clip"], ["lcm", 1, "neg", "clip"],
      ["lcm", 0, "sampler", "model"], ["pos", 0, "sampler", "positive"], ["neg", 0, "sampler", "negative"],
      ["latent", 0, "sampler", "latent_image"], ["sampler", 0, "decode", "samples"], ["ckpt", 2, "decode", "vae"],
      ["decode", 0, "save", "images"]],
  },
  ddim_eta: {
    title: "DDIM with eta, side by side",
    description: "Same seed and schedule: deterministic DDIM beside eta 1.",
    focus: ["sched"],
    note: [
      "Both samplers share the seed, the prompt and the DDIM Scheduler (Recall); only eta differs. eta 0 is deterministic DDIM; eta 1 adds fresh noise at every step, like DDPM; values between mix the two.",
      "Model: models/checkpoints/v1-5-pruned-emaonly.safetensors (any SD1.5 or SDXL checkpoint).",
      "Try: eta on the second DDIM Sampler (Recall); the scheduler's steps and timestep_spacing (leading as in the DDIM paper and diffusers; trailing for zero-terminal-SNR models, with rescale on).",
    ].join("\n\n"),
    noteAt: [760, 640],
    nodes: {
      ckpt: ["CheckpointLoaderSimple", [40, 60], { ckpt_name: "v1-5-pruned-emaonly.safetensors" }, [330, 100]],
      pos: ["CLIPTextEncode", [40, 200], { text: "a red fox in a snowy forest, photograph" }, [330, 140]],
      neg: ["CLIPTextEncode", [40, 380], { text: NEGATIVE }, [330, 120]],
      latent: ["EmptyLatentImage", [410, 40], { width: 512, height: 512, batch_size: 1 }, [300, 106]],
      sched: ["RecallDDIMScheduler", [410, 230], { steps: 20, timestep_spacing: "leading", steps_offset: 1,
        set_alpha_to_one: true, rescale_zero_terminal_snr: false, denoise: 1.0 }, [300, 200]],
      eta0: ["RecallSamplerDDIM", [410, 500], { eta: 0.0 }, [300, 60]],
      eta1: ["RecallSamplerDDIM", [410, 610], { eta: 1.0 }, [300, 60]],
      run0: ["SamplerCustom", [760, 40], { add_noise: true, noise_seed: 42, control_after_generate: "fixed",
        cfg: 7.0 }, [300, 250]],
      run1: ["SamplerCustom", [760, 330], { add_noise: true, noise_seed: 42, control_after_generate: "fixed",
        cfg: 7.0 }, [300, 250]],
      dec0: ["VAEDecode", [1100, 40], {}, [210, 50]],
      dec1: ["VAEDecode", [1100, 330], {}, [210, 50]],
      save0: ["SaveImage", [1340, 40], { filename_prefix: "ddim_eta0" }, [260, 270]],
      save1: ["SaveImage", [1620, 40], { filename_prefix: "ddim_eta1" }, [260, 270]],
    },
    links: [["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"], ["ckpt", 0, "sched", "model"],
      ...["run0", "run1"].flatMap((run) => [["ckpt", 0, run, "model"], ["pos", 0, run, "positive"],
        ["neg", 0, run, "negative"], ["sched", 0, run, "sigmas"], ["latent", 0, run, "latent_image"]]),
      ["eta0", 0, "run0", "sampler"], ["eta1", 0, "run1", "sampler"],
      ["run0", 0, "dec0", "samples"], ["run1", 0, "dec1", "samples"], ["ckpt", 2, "dec0", "vae"],
      ["ckpt", 2, "dec1", "vae"], ["dec0", 0, "save0", "images"], ["dec1", 0, "save1", "images"]],
  },
  recall_cache_clip_vision: {
    title: "Recall Cache: skip a branch",
    description: "On a repeat the CLIP-vision loader and encoder do not run.",
    focus: ["venc", "cache"],
    note: [
      "Recall Cache sits on the link after CLIP Vision Encode. When the same image and CLIP-vision file were encoded before (in this session, before a restart, or on another worker), the loader and the encoder upstream of it do not run at all. Put one on any link whose upstream is slow and gives the same result each time.",
      "Models: models/checkpoints/sd21-unclip-h.ckpt and models/clip_vision/clip_vision_h.safetensors (SD2.1 unCLIP image variations).",
      "Try: another image, the prompt, strength or noise_augmentation.",
    ].join("\n\n"),
    noteAt: [40, 560],
    nodes: {
      image: ["LoadImage", [40, 40], { image: "example.png" }, [320, 300]],
      vision: ["CLIPVisionLoader", [40, 380], { clip_name: "clip_vision_h.safetensors" }, [320, 58]],
      venc: ["CLIPVisionEncode", [400, 40], { crop: "center" }, [260, 80]],
      cache: ["RecallCache", [400, 200], { allow_nondeterministic: false }, [260, 80]],
      ckpt: ["CheckpointLoaderSimple", [400, 340], { ckpt_name: "sd21-unclip-h.ckpt" }, [300, 100]],
      pos: ["CLIPTextEncode", [740, 300], { text: "a watercolor variation of the image" }, [340, 120]],
      neg: ["CLIPTextEncode", [740, 460], { text: NEGATIVE }, [340, 120]],
      unclip: ["unCLIPConditioning", [740, 40], { strength: 1.0, noise_augmentation: 0.0 }, [300, 110]],
      latent: ["EmptyLatentImage", [740, 620], { width: 768, height: 768, batch_size: 1 }, [300, 106]],
      sampler: ["KSampler", [1120, 40], { seed: 42, control_after_generate: "fixed", steps: 20, cfg: 7.0,
        sampler_name: "euler", scheduler: "normal", denoise: 1.0 }, [300, 262]],
      decode: ["VAEDecode", [1120, 340], {}, [210, 50]],
      save: ["SaveImage", [1120, 430], { filename_prefix: "recall_cache_unclip" }, [300, 300]],
    },
    links: [["vision", 0, "venc", "clip_vision"], ["image", 0, "venc", "image"], ["venc", 0, "cache", "value"],
      ["cache", 0, "unclip", "clip_vision_output"], ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["pos", 0, "unclip", "conditioning"], ["ckpt", 0, "sampler", "model"], ["unclip", 0, "sampler", "positive"],
      ["neg", 0, "sampler", "negative"], ["latent", 0, "sampler", "latent_image"], ["sampler", 0, "decode", "samples"],
      ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
};

// Runs in the page: build one spec on an empty graph; returns problems found (unknown widget, failed link).
function buildInPage(spec) {
  const { app } = window.comfyAPI.app;
  const LiteGraph = window.LiteGraph;
  app.graph.clear();
  const made = {};
  const problems = [];
  for (const [key, [type, pos, widgets, size]] of Object.entries(spec.nodes)) {
    const node = LiteGraph.createNode(type);
    if (!node) { problems.push(`unknown node type ${type}`); continue; }
    node.pos = [...pos];
    app.graph.add(node);
    // Text boxes ask for far more height than a short prompt needs; other nodes keep their minimum.
    if (size) node.size = [Math.max(size[0], node.size[0]), type.includes("TextEncode") ? size[1] : Math.max(size[1], node.size[1])];
    for (const [name, value] of Object.entries(widgets)) {
      const widget = node.widgets?.find((w) => w.name === name);
      if (!widget) { problems.push(`${type} has no widget ${name}`); continue; }
      widget.value = value;
    }
    made[key] = node;
  }
  for (const [from, slot, to, inputName] of spec.links) {
    const target = made[to];
    const index = target.findInputSlot(inputName);
    if (index < 0 || !made[from].connect(slot, target, index)) {
      problems.push(`link ${from}[${slot}] -> ${to}.${inputName} failed`);
    }
  }
  const note = LiteGraph.createNode("Note");
  note.pos = [...spec.noteAt];
  note.size = [560, 210];
  note.widgets[0].value = spec.note;
  note.title = "Read me";
  app.graph.add(note);
  return { problems, made: Object.fromEntries(Object.entries(made).map(([key, node]) => [key, node.id])) };
}

// The view a template opens in (extra.ds): every node inside a 1280x720 window, right of the
// side bar, below the top bar and 1.35's floating run bar (which a whole-window fit slid under),
// and clear of the minimap.
function openingViewInPage() {
  const { app } = window.comfyAPI.app;
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const node of app.graph.nodes) {
    x0 = Math.min(x0, node.pos[0]); y0 = Math.min(y0, node.pos[1] - 40); // title and badge above pos
    x1 = Math.max(x1, node.pos[0] + node.size[0]); y1 = Math.max(y1, node.pos[1] + node.size[1]);
  }
  const box = { left: 90, top: 130, width: 1280 - 90 - 40, height: 720 - 130 - 50 };
  // the minimap floats over the bottom right corner on both frontends
  const minimap = { left: 940, top: 410 }; // 1.27 draws the canvas 40 px right of and below 1.35's
  let scale = Math.min(box.width / (x1 - x0), box.height / (y1 - y0), 1);
  const covered = (s) => app.graph.nodes.some((n) => box.left + (n.pos[0] + n.size[0] - x0) * s > minimap.left
    && box.top + (n.pos[1] + n.size[1] - y0) * s > minimap.top);
  while (covered(scale) && scale > 0.3) scale -= 0.01;
  return { scale, offset: [box.left / scale - x0, box.top / scale - y0] };
}

// The preview: the focus nodes (the Recall node and its neighbour) filling a square, with the
// badge a run would give them, so the card shows what the template is about at a legible size.
const PREVIEW = { x: 420, y: 160, size: 600 };
function previewInPage([spec, made, preview]) {
  const { app } = window.comfyAPI.app;
  const nodes = spec.focus.map((key) => app.graph.getNodeById(made[key]));
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const node of nodes) {
    x0 = Math.min(x0, node.pos[0]); y0 = Math.min(y0, node.pos[1] - 70);
    x1 = Math.max(x1, node.pos[0] + node.size[0]); y1 = Math.max(y1, node.pos[1] + node.size[1]);
  }
  const side = Math.max(x1 - x0, y1 - y0) + 120;
  const scale = preview.size / side;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [(preview.x + preview.size / 2) / scale - cx, (preview.y + preview.size / 2) / scale - cy];
  const recall = nodes.find((n) => n.type.startsWith("Recall"));
  if (recall) {
    const detail = { node_id: String(recall.id), node_type: recall.type, status: "hit", tier: "ram", saved_s: 4.2,
      compute_s: 0, reason: null, key: null };
    window.comfyAPI.api.api.dispatchEvent(new CustomEvent("execution_start", { detail: {} }));
    window.comfyAPI.api.api.dispatchEvent(new CustomEvent("recall.node", { detail }));
  }
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
}

// The minimap would cover the bottom right of every preview.
async function hideMinimap() {
  const { app } = window.comfyAPI.app;
  try { await app.extensionManager.setting.set("Comfy.Minimap.Visible", false); } catch (e) { /* older frontends */ }
}

const browser = await chromium.launch({ executablePath: opt.chromium, args: CHROMIUM_FLAGS, headless: true });
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await page.goto(opt.url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph && window.LiteGraph?.registered_node_types?.RecallCache,
    null, { timeout: 120000 });
  // The page loads its start-up workflow asynchronously; building before it lands loses the graph.
  await page.waitForFunction(() => window.comfyAPI.app.app.graph.nodes.length > 0, null, { timeout: 60000 })
    .catch(() => {});
  await page.waitForTimeout(1000);
  await page.evaluate(hideMinimap);
  // Whatever dialog the page opened with (templates, what's new) would cover the previews.
  for (let i = 0; i < 3 && await page.locator(".p-dialog-mask").count(); i++) {
    await page.keyboard.press("Escape");
    await page.waitForTimeout(300);
  }
  const written = [];
  for (const [name, spec] of Object.entries(SPECS)) {
    if (opt.only && opt.only !== name) continue;
    const { problems, made } = await page.evaluate(buildInPage, spec);
    if (problems.length) throw new Error(`${name}: ${problems.join("; ")}`);
    await page.waitForTimeout(300); // node sizes settle after the first draw
    const graph = await page.evaluate(() => window.comfyAPI.app.app.graph.serialize());
    graph.extra = { ...graph.extra, ds: await page.evaluate(openingViewInPage),
      recall_template: { title: spec.title, description: spec.description } };
    writeFileSync(join(opt.out, `${name}.json`), JSON.stringify(graph, null, 2) + "\n");
    await page.evaluate(previewInPage, [spec, made, PREVIEW]);
    await page.waitForTimeout(300);
    await page.evaluate(previewInPage, [spec, made, PREVIEW]);
    await page.screenshot({ path: join(opt.out, `${name}.jpg`), type: "jpeg", quality: 85,
      clip: { x: PREVIEW.x, y: PREVIEW.y, width: PREVIEW.size, height: PREVIEW.size } });
    written.push(name);
    console.error(`[build_workflows] ${name}: ${graph.nodes.length} nodes, ${graph.links.length} links`);
  }
  console.log(JSON.stringify({ written }));
} finally {
  await browser.close();
}
