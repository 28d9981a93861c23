"""
The valid names of every choice in vton_ros, in one torch-free module.

The settings schema (:mod:`vton_ros.settings.schema`) and the pipeline both import these
tuples, so a new scheduler, decoder or mode is added here once and both accept it.
"""

CLOTH_TYPES = ('upper', 'lower', 'overall')
SCHEDULERS = ('ddim', 'dpmpp_2m', 'dpmpp_2m_karras', 'euler', 'euler_a', 'unipc')
ATTN_VERSIONS = ('mix', 'vitonhd', 'dresscode')
DTYPE_NAMES = ('fp32', 'fp16', 'bf16')
PRECISIONS = ('auto',) + DTYPE_NAMES
DECODERS = ('full', 'tiny')
PREVIEW_DECODERS = ('latent', 'tiny')
OFFLOAD_MODES = ('none', 'model', 'sequential')
SDPA_BACKENDS = ('auto', 'flash', 'efficient', 'math')
MASK_BACKENDS = ('pose', 'unet')
BUSY_POLICIES = ('reject', 'queue', 'preempt')
BACKENDS = ('torch', 'onnxruntime')
ENCODERS = ('full', 'tiny')
ATTENTION_SLICINGS = ('none', 'auto', 'max')  # heads per slice: all, half, one
FRAMINGS = ('person', 'centre')  # the box of the frame the model sees
PRERENDER_MODES = ('off', 'shelf', 'catalogue')  # what tryon_server renders before a tap
LIVE_BETWEEN = ('register', 'pose', 'track')  # live frames between masks: how followed
# Steps of one try-on: the schema's range of catvton.num_inference_steps and the pipeline's.
MAX_STEPS = 1000


def check_choice(what: str, value: str, valid: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``valid``; else raise ValueError listing them."""
    if value not in valid:
        raise ValueError(f'unknown {what} {value!r}; valid: {", ".join(valid)}')
    return value
