"""Model families: what a spec may ask of each kind of diffusion model.

A registry entry names its family (``family = "sdxl"``). The family says which schedulers
its denoiser can run, which spec fields mean nothing to it (a spec that sets one is a 422
naming the field, never silently ignored), what ``guidance_scale`` does and the multiple
its sizes must be. Every family does all three kinds (text-to-image, image-to-image,
inpainting): diffusers builds each pipeline's siblings from its weights. The API checks specs
against it (:func:`check_spec`, called from ``fresco.spec.resolve``); the registry checks
each entry against it at load; the model cache checks that the folder it loaded holds the
family's pipeline (:func:`check_pipeline`); the sampler shapes the call by it.

No torch here: the API imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fresco.errors import InvalidSpec

if TYPE_CHECKING:
    from fresco.registry import ModelEntry

FamilyName = Literal["sd", "sdxl", "sd3", "flux"]

# Schedulers for denoisers trained to predict noise (or v) on a discrete beta schedule.
NOISE_SCHEDULERS = ("ddim", "ddpm", "pndm", "euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_sde", "unipc", "lcm")
# What an entry of such a family allows when it lists none (dpmpp_sde needs torchsde, lcm
# an LCM-distilled model, so an entry opts into those).
NOISE_DEFAULTS = ("ddim", "ddpm", "pndm", "euler", "euler_a", "heun", "dpmpp_2m", "unipc")
# Schedulers for denoisers trained on rectified flow (flow matching).
FLOW_SCHEDULERS = ("flow_euler",)

_NO_BETAS = "a flow-matching model has no beta (noise) schedule to override"


@dataclass(frozen=True)
class Family:
    name: str
    schedulers: tuple[str, ...]  # what its denoiser can run
    default_schedulers: tuple[str, ...]  # what an entry allows when it lists none
    default_scheduler: str
    guidance: Literal["classifier-free", "distilled"]  # what guidance_scale does
    size_multiple: int  # width and height: latent factor x patch size of the real checkpoints
    refuses: dict[str, str] = field(default_factory=dict)  # spec field -> why it means nothing here
    # diffusers class names of its text-to-image pipeline (and subclasses); () for the
    # catch-all family of UNet pipelines with one text encoder.
    pipelines: tuple[str, ...] = ()
    # The pipeline component LoRA adapters apply to (fresco/adapters.py): its name is also
    # the prefix of its keys in diffusers' LoRA files ("unet.down_blocks…").
    denoiser: str = "unet"


FAMILIES: dict[str, Family] = {f.name: f for f in (
    # Stable Diffusion 1.x/2.x and other UNet pipelines with one CLIP text encoder (shapes)
    Family("sd", NOISE_SCHEDULERS, NOISE_DEFAULTS, "ddim", "classifier-free", 8),
    # Stable Diffusion XL: a UNet conditioned on two CLIP text encoders and on size and crop
    Family("sdxl", NOISE_SCHEDULERS, NOISE_DEFAULTS, "euler", "classifier-free", 8,
           pipelines=("StableDiffusionXLPipeline",)),
    # Stable Diffusion 3: an MMDiT transformer over two CLIP encoders and T5, flow matching
    Family("sd3", FLOW_SCHEDULERS, FLOW_SCHEDULERS, "flow_euler", "classifier-free", 16,
           refuses={"beta_schedule": _NO_BETAS}, pipelines=("StableDiffusion3Pipeline",), denoiser="transformer"),
    # Flux: a guidance-distilled transformer over CLIP and T5, flow matching
    Family("flux", FLOW_SCHEDULERS, FLOW_SCHEDULERS, "flow_euler", "distilled", 16,
           refuses={"beta_schedule": _NO_BETAS,
                    "negative_prompt": "Flux is guidance-distilled: it has no unconditional pass for a "
                                       "negative prompt to steer"},
           pipelines=("FluxPipeline",), denoiser="transformer"),
)}


def family_of(pipe: Any) -> str:
    """The family whose call a loaded pipeline takes, from its class (or a base class)."""
    names = {cls.__name__ for cls in type(pipe).__mro__}
    for family in FAMILIES.values():
        if names.intersection(family.pipelines):
            return family.name
    return "sd"


def check_pipeline(entry: "ModelEntry", pipe: Any) -> None:
    """A folder that holds another family's pipeline than its entry says fails the load,
    with both names, instead of failing every call."""
    found = family_of(pipe)
    if found != entry.family:
        raise ValueError(f"the registry says family {entry.family!r} but the folder holds a "
                         f"{type(pipe).__name__} (family {found!r})")


def check_spec(entry: "ModelEntry", fields: dict[str, Any], where: str = "") -> None:
    """Refuse what the model's family cannot act on. Runs after ``fresco.spec.resolve``'s
    own checks (a scheduler outside the entry's list is refused there: an entry lists only
    schedulers its family runs). ``fields``: as the client set them (unset ones left out);
    the entry's defaults are checked against the family when the registry loads."""
    family = FAMILIES[entry.family]

    def fail(name: str, message: str) -> InvalidSpec:
        return InvalidSpec(f"{where}{name}: {message}", field=f"{where}{name}")

    for name, why in family.refuses.items():
        if fields.get(name) not in (None, ""):  # "" is how clients write "none" for a prompt
            raise fail(name, f"does not apply to model {entry.id} (family {family.name}): {why}")
    for name in ("width", "height"):
        value = fields.get(name)
        if isinstance(value, int) and value % family.size_multiple:
            raise fail(name, f"{value} is not a multiple of {family.size_multiple} (model {entry.id}, "
                             f"family {family.name})")
