"""LCM-LoRA in one node, and the LCM timestep schedule as SIGMAS.

RecallLCMLoraLoader = LoraLoader + ModelSamplingDiscrete(sampling="lcm") with three additions:
the parsed file is kept in the cache engine's RAM tier under its content hash (a strength
change or a re-run reads nothing), every key of the file is applied or reported, and a LoRA
made for another base model is refused with both names. Weights are applied through ComfyUI's
own machinery (comfy.lora.load_lora + ModelPatcher.add_patches), so the result composes with
other LoRA loaders and model patches exactly as a core LoraLoader's does.

RecallLCMScheduler gives the timesteps diffusers' LCMScheduler picks (lib/lcm_schedule.py),
as sigmas of the MODEL's training schedule, for SamplerCustom with the `lcm` sampler.
"""
from __future__ import annotations

import logging
import time

from ..cache.keys import build_key
from . import events, runtime
from ._api import io
from .lib import lcm_schedule, lora_keys
from .lib.file_digest import file_stamp

_log = logging.getLogger("recall.lcm")

NAMESPACE = "lora_files"

STEPS_HINT = "LCM needs few steps: 2-8 (4 is the usual choice)."
CFG_HINT = "Sample with cfg 1-2 (1 ignores the negative prompt and is twice as fast)."


def _file_key(digest: str, alpha) -> str:
    return build_key("lora_file", contents=[digest], params={"peft_alpha": alpha})


def load_parsed(path: str, name: str):
    """(ParsedLora, status, tier, seconds): from the RAM tier when the file's content was seen before."""
    alpha = lora_keys.peft_alpha(path)
    # without a store (caching off or broken) the loader reads the file on every run
    rt = runtime.current()
    store, _ = rt.store_or_reason("LoRA files are read on every run")
    digests = rt.file_digests
    digest = digests.known(path)
    if store is not None and digest is not None:
        hit = store.get(_file_key(digest, alpha), namespace=NAMESPACE)
        if hit is not None:
            return hit.value, "hit", hit.tier, hit.saved_seconds
    start = time.perf_counter()
    digest, data = digests.read(path)
    key = _file_key(digest, alpha)
    if store is not None:  # same content under another name or path
        hit = store.get(key, namespace=NAMESPACE)
        if hit is not None:
            return hit.value, "hit", hit.tier, hit.saved_seconds
    parsed = lora_keys.parse(data, name, alpha=alpha)
    del data
    seconds = time.perf_counter() - start
    if store is not None:
        # the file stays on disk, so a RAM reference is enough: no serialised copy
        store.put(key, parsed, namespace=NAMESPACE, compute_seconds=seconds, label=name, by_reference=True)
    return parsed, "miss", None, seconds


class _ReadTracker(dict):
    """A shallow copy of the LoRA dict that records which keys comfy.lora.load_lora reads.

    load_lora reads exactly the keys it turns into patches (alpha, up/down, mid, dora_scale, diff, ...);
    it only checks membership of the others. The difference to the file is what it ignored.
    """

    def __init__(self, data):
        super().__init__(data)
        self.read: set[str] = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.read.add(key)
        return value

    def get(self, key, default=None):
        if key in self:
            self.read.add(key)
        return super().get(key, default)


def _stem(key: str) -> str:
    return key.split(".", 1)[0]


def apply_lora(model, clip, parsed, strength_model: float, strength_clip: float):
    """(model, clip, unapplied file keys, skipped text-encoder keys): ComfyUI's LoRA path, fully accounted."""
    import comfy.lora

    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    if clip is not None:
        key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, key_map)
    tracker = _ReadTracker(parsed.tensors)
    patches = comfy.lora.load_lora(tracker, key_map, log_missing=False)

    new_model = model.clone()
    applied = set(new_model.add_patches(patches, strength_model))
    new_clip = None
    if clip is not None:
        new_clip = clip.clone()
        applied |= set(new_clip.add_patches(patches, strength_clip))
    lost_targets = {t for t in patches if t not in applied}  # mapped, but no such weight in the model
    lost_stems = {stem for stem, target in key_map.items() if target in lost_targets}

    unapplied, skipped_te = [], []
    for key in parsed.tensors:
        if key in parsed.injected_alpha or (key in tracker.read and _stem(key) not in lost_stems):
            continue
        if clip is None and key.startswith(("lora_te_", "lora_te1_", "lora_te2_")):
            skipped_te.append(parsed.origin[key])
        else:
            unapplied.append(parsed.origin[key])
    return new_model, new_clip, sorted(unapplied), sorted(skipped_te), len(applied)


def lcm_sampling(model):
    """A clone of the model sampling as ModelSamplingDiscrete(sampling="lcm", zsnr=False) sets it up."""
    from comfy_extras.nodes_model_advanced import LCM, ModelSamplingDiscreteDistilled

    class ModelSamplingAdvanced(ModelSamplingDiscreteDistilled, LCM):
        pass

    patched = model.clone()
    patched.add_object_patch("model_sampling", ModelSamplingAdvanced(model.model.model_config, zsnr=False))
    return patched


def model_base_name(model) -> str:
    config = getattr(model.model, "model_config", None)
    unet = getattr(config, "unet_config", {}) or {}
    return lora_keys.model_base(unet.get("context_dim"), unet.get("transformer_depth"), type(config).__name__)


def _report_keys(name: str, model: str, unapplied: list[str], skipped_te: list[str], total: int,
                 applied: int) -> None:
    if skipped_te:
        _log.info("[Recall] LCM-LoRA Loader: '%s': %d text-encoder keys not applied because no CLIP is "
                  "connected (connect CLIP to apply them)", name, len(skipped_te))
    if not unapplied:
        return
    if applied == 0:
        raise ValueError(
            f"[Recall] LCM-LoRA Loader: none of the {total} keys of '{name}' match the MODEL "
            f"(e.g. {', '.join(unapplied[:3])}) (expected keys of a LoRA for {model}). "
            f"Pick a LoRA made for {model}.")
    # Some keys unused while the rest applies: the image still renders with most of the LoRA, so a
    # warning (log) rather than an error; an error would block files with harmless extras.
    _log.warning("[Recall] LCM-LoRA Loader: %d of %d keys of '%s' were not applied (no matching weight "
                 "in the MODEL/CLIP): %s%s", len(unapplied), total, name, ", ".join(unapplied[:8]),
                 " ..." if len(unapplied) > 8 else "")


class RecallLCMLoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        import folder_paths
        return io.Schema(
            node_id="RecallLCMLoraLoader",
            display_name="LCM-LoRA Loader (Recall)",
            category="Recall/lcm",
            description=("Loads an LCM-LoRA and switches the model to LCM sampling in one step. "
                         f"{STEPS_HINT} {CFG_HINT} Use the lcm sampler with sgm_uniform, or "
                         "LCM Scheduler (Recall) with SamplerCustom."),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (SD1.5, SDXL or SSD-1B) the LCM-LoRA is for."),
                io.Clip.Input("clip", optional=True,
                              tooltip="Optional CLIP; LCM-LoRAs rarely carry text-encoder weights."),
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras"),
                               tooltip="The LCM-LoRA file (kohya, diffusers or PEFT keys) from the loras folder."),
                io.Float.Input("strength_model", default=1.0, min=-100.0, max=100.0, step=0.01,
                               tooltip=f"How strongly to modify the diffusion model (1.0 for LCM). {STEPS_HINT}"),
                io.Float.Input("strength_clip", default=1.0, min=-100.0, max=100.0, step=0.01,
                               tooltip="How strongly to modify CLIP (only used when CLIP is connected)."),
                io.Boolean.Input("set_lcm_sampling", default=True,
                                 tooltip=("Switch the model to LCM sampling (as ModelSamplingDiscrete with lcm). "
                                          f"Turn off only if you patch the sampling yourself. {CFG_HINT}")),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip=f"The LCM model. {STEPS_HINT} {CFG_HINT}"),
                io.Clip.Output(display_name="CLIP", tooltip="The CLIP with the LoRA applied (None if none came in)."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def fingerprint_inputs(cls, lora_name, **kwargs):
        # a file replaced under the same name re-runs the node; an untouched one stays cached by ComfyUI
        import folder_paths
        path = folder_paths.get_full_path("loras", lora_name)
        try:
            return tuple(file_stamp(path)) if path else lora_name
        except OSError:
            return lora_name

    @classmethod
    def execute(cls, model, lora_name, strength_model, strength_clip, set_lcm_sampling, clip=None) -> io.NodeOutput:
        import folder_paths
        path = folder_paths.get_full_path_or_raise("loras", lora_name)
        parsed, status, tier, seconds = load_parsed(path, lora_name)
        base = model_base_name(model)
        lora_keys.check_base(lora_name, parsed.base, parsed.base_reason, base)
        new_model, new_clip, unapplied, skipped_te, applied = apply_lora(
            model, clip, parsed, strength_model, strength_clip)
        _report_keys(lora_name, base, unapplied, skipped_te, len(parsed.file_keys), applied)
        if set_lcm_sampling:
            new_model = lcm_sampling(new_model)
        node_id = getattr(getattr(cls, "hidden", None), "unique_id", None)
        events.report_node(node_id, "RecallLCMLoraLoader", status, tier=tier,
                           saved_s=seconds if status == "hit" else 0.0,
                           compute_s=0.0 if status == "hit" else seconds,
                           reason=None if status == "hit" else "first load of this file content")
        return io.NodeOutput(new_model, new_clip)


def full_sigma_table(model):
    """sigma for every training timestep: the model's own table, or, when it is LCM-distilled
    (50 entries), the full one rebuilt from the model config as ModelSamplingDiscrete does."""
    import comfy.model_sampling
    sampling = model.get_model_object("model_sampling")
    if not isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete):
        raise ValueError(f"[Recall] LCM Scheduler: the MODEL samples with {type(sampling).__name__} "
                         f"(expected a discrete-timestep model such as SD1.5 or SDXL). "
                         f"Use it only with SD1.5/SDXL/SSD-1B LCM models.")
    if len(sampling.sigmas) == sampling.num_timesteps:
        return sampling.sigmas
    return comfy.model_sampling.ModelSamplingDiscrete(model.model.model_config).sigmas


class RecallLCMScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RecallLCMScheduler",
            display_name="LCM Scheduler (Recall)",
            category="Recall/lcm",
            description=("The timesteps diffusers' LCMScheduler uses, as SIGMAS for SamplerCustom with the "
                         f"lcm sampler. {STEPS_HINT} {CFG_HINT}"),
            inputs=[
                io.Model.Input("model", tooltip="The LCM model (after LCM-LoRA Loader)."),
                io.Int.Input("steps", default=4, min=lcm_schedule.MIN_STEPS, max=lcm_schedule.MAX_STEPS,
                             tooltip=f"{STEPS_HINT} {CFG_HINT}"),
                io.Int.Input("original_inference_steps", default=50, min=1, max=1000,
                             tooltip="Size of the distillation grid the LCM was trained on (50 for the released LCM-LoRAs)."),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="Less than 1 for img2img: uses only the lower part of the grid (diffusers' strength)."),
            ],
            outputs=[io.Sigmas.Output(display_name="SIGMAS")],
        )

    @classmethod
    def execute(cls, model, steps, original_inference_steps, denoise) -> io.NodeOutput:
        table = full_sigma_table(model)
        timesteps = lcm_schedule.lcm_timesteps(steps, original_inference_steps,
                                               num_train_timesteps=len(table), strength=denoise)
        return io.NodeOutput(lcm_schedule.sigmas_for_timesteps(table, timesteps))


NODES = [RecallLCMLoraLoader, RecallLCMScheduler]
