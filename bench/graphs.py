"""API-format graphs the live benchmark queues: core nodes vs Recall nodes, the same graph otherwise.

    svd  LoadImage -> (ImageOnlyCheckpointLoader | CLIPVisionLoader + VAELoader) ->
         SVD_img2vid_Conditioning (core) / RecallSVDImg2VidConditioning -> PreviewAny(latent)
         varied per run: video_frames
    wan  LoadImage, CLIPVisionLoader -> CLIPVisionEncode, (CLIPLoader wan | checkpoint's CLIP) ->
         CLIPTextEncode x2, VAELoader -> WanImageToVideo -> PreviewAny(latent); Recall: the Recall
         twin of each encode-bearing node. Varied per run: the prompt.
The sampler is left out: it is identical in both arms and takes minutes per run on a CPU.
ENCODE_NODES names the nodes whose execution time is reported as "encode time".
"""
from dataclasses import dataclass

PROMPTS = ["a red fox in the snow", "a red fox running through snow", "a fox at dusk, cinematic",
           "a fox in a meadow, soft light", "a fox on a frozen lake", "a sleeping fox", "a fox, watercolor",
           "a fox in the rain", "a fox under the stars", "a fox in autumn leaves", "a fox, pencil sketch",
           "a fox by a river", "a fox in fog"]
NEGATIVE = "blurry, low quality"


@dataclass
class Models:
    """Names as the server lists them; standin=True where a random-weight file is used."""
    clip_vision: str
    svd_vae: str | None = None            # used with clip_vision when there is no SVD checkpoint
    svd_checkpoint: str | None = None     # ImageOnlyCheckpointLoader: CLIP vision + VAE in one file
    wan_vae: str | None = None
    text_encoder: str | None = None       # umt5 for CLIPLoader(type=wan)
    checkpoint: str | None = None         # else the CLIP of this checkpoint encodes the prompt
    standin: tuple = ()                   # which of the above are random-weight stand-ins


def svd_graph(arm: str, models: Models, image: str, width: int, height: int, frames: int) -> dict:
    g = {"1": {"class_type": "LoadImage", "inputs": {"image": image}}}
    if models.svd_checkpoint:
        g["2"] = {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": models.svd_checkpoint}}
        vision, vae = ["2", 1], ["2", 2]
    else:
        g["2"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models.clip_vision}}
        g["3"] = {"class_type": "VAELoader", "inputs": {"vae_name": models.svd_vae}}
        vision, vae = ["2", 0], ["3", 0]
    g["4"] = {"class_type": "RecallSVDImg2VidConditioning" if arm == "recall" else "SVD_img2vid_Conditioning",
              "inputs": {"clip_vision": vision, "init_image": ["1", 0], "vae": vae, "width": width, "height": height,
                         "video_frames": frames, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}}
    if arm == "recall":
        g["4"]["inputs"]["seed"] = 0
    g["5"] = {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}}
    return g


def wan_graph(arm: str, models: Models, image: str, width: int, height: int, frames: int, prompt: str) -> dict:
    recall = arm == "recall"
    text_node = "RecallCLIPTextEncode" if recall else "CLIPTextEncode"
    g = {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
         "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": models.clip_vision}},
         "3": {"class_type": "RecallCLIPVisionEncode" if recall else "CLIPVisionEncode",
               "inputs": {"clip_vision": ["2", 0], "image": ["1", 0], "crop": "none"}},
         "4": {"class_type": "VAELoader", "inputs": {"vae_name": models.wan_vae}}}
    if models.text_encoder:
        g["5"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": models.text_encoder, "type": "wan",
                                                         "device": "default"}}
        clip = ["5", 0]
    else:
        g["5"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": models.checkpoint}}
        clip = ["5", 1]
    g["6"] = {"class_type": text_node, "inputs": {"text": prompt, "clip": clip}}
    g["7"] = {"class_type": text_node, "inputs": {"text": NEGATIVE, "clip": clip}}
    g["8"] = {"class_type": "RecallWanImageToVideo" if recall else "WanImageToVideo",
              "inputs": {"positive": ["6", 0], "negative": ["7", 0], "vae": ["4", 0], "width": width,
                         "height": height, "length": frames, "batch_size": 1, "clip_vision_output": ["3", 0],
                         "start_image": ["1", 0]}}
    g["9"] = {"class_type": "PreviewAny", "inputs": {"source": ["8", 2]}}
    return g


# node ids whose execution counts as encoding (text, CLIP vision, VAE), per scenario
ENCODE_NODES = {"svd": ("4",), "wan": ("3", "6", "7", "8")}
