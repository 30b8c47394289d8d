"""ShapesPipeline: text-to-image in pixel space for the farm's default model.

The model (``models/shapes``, trained by ``model_tools.train_shapes``) draws one
coloured shape on a coloured background from prompts like "a red circle on a blue
background". Its components are stock classes (``UNet2DConditionModel``,
``CLIPTextModel``, ``CLIPTokenizer`` and any diffusers scheduler), so
``ShapesPipeline.from_pretrained(folder)`` loads it like any model. There is no VAE: the
UNet denoises RGB pixels in [-1, 1] directly.

``__call__`` takes the same arguments as ``StableDiffusionPipeline`` for what the farm
uses: prompt, negative prompt, size, steps, guidance, per-image generators, output type
and the step-end callback (which may set ``_interrupt``).
"""

import inspect
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

OUTPUT_TYPES = ("pil", "np", "pt")


class ShapesPipeline(DiffusionPipeline):
    """Classifier-free-guided text-to-image sampling of a pixel-space conditional UNet."""

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents", "prompt_embeds"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: KarrasDiffusionSchedulers,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self._interrupt = False
        self._guidance_scale = 1.0
        self._num_timesteps = 0

    @property
    def size_multiple(self) -> int:
        # The UNet halves the size len(block_out_channels) - 1 times; sizes must divide evenly.
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def encode_prompt(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        """Text-encoder hidden states, (len(prompts), model_max_length, hidden)."""
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        # No attention mask, as in Stable Diffusion: the encoder is causal, so padding
        # never changes the states of the prompt's own tokens. One prompt per call on
        # CPU (see predict_noise); the encoder is tiny, so this costs nothing.
        if device.type == "cpu":
            return torch.cat([self.text_encoder(row[None])[0] for row in ids])
        return self.text_encoder(ids)[0]

    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """The (guided) noise prediction for ``latents``.

        With guidance the UNet sees each image as [unconditional, conditional]. On CUDA
        the whole batch goes through one UNet call. On CPU each image gets its own call
        (batch 2, or 1 without guidance): CPU GEMM kernels round differently for
        different batch sizes (seen with MKL for batches 1, 2-3 and 4+), so only calls
        of a fixed shape make an image bit-for-bit the same alone and at any position of
        any batch, which the farm promises. That costs about 1.7x in time on CPU.
        """
        cfg = self.do_classifier_free_guidance
        batch = latents.shape[0]
        model_input = torch.cat([latents] * 2) if cfg else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        if latents.device.type != "cpu":
            noise_pred = self.unet(model_input, t, encoder_hidden_states=prompt_embeds).sample
        else:
            noise_pred = torch.empty_like(model_input)
            for i in range(batch):
                rows = [i, batch + i] if cfg else [i]
                noise_pred[rows] = self.unet(model_input[rows], t, encoder_hidden_states=prompt_embeds[rows]).sample
        if cfg:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + self.guidance_scale * (cond - uncond)
        return noise_pred

    def prepare_extra_step_kwargs(self, generator: torch.Generator | list[torch.Generator] | None) -> dict:
        # Only some schedulers (DDPM, ancestral ones) draw noise in step(); the others
        # do not accept a generator, so pass it only where the signature has it.
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            return {"generator": generator}
        return {}

    def check_inputs(
        self,
        prompts: list[str],
        negative_prompts: list[str],
        height: int,
        width: int,
        num_inference_steps: int,
        generator: torch.Generator | list[torch.Generator] | None,
        output_type: str,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> None:
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        if len(negative_prompts) != len(prompts):
            raise ValueError(f"{len(negative_prompts)} negative prompts for {len(prompts)} prompts")
        for name, size in (("height", height), ("width", width)):
            if size < self.size_multiple or size % self.size_multiple:
                raise ValueError(f"{name} must be a positive multiple of {self.size_multiple}, got {size}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if isinstance(generator, list) and len(generator) != len(prompts):
            raise ValueError(f"{len(generator)} generators for {len(prompts)} prompts")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback tensor inputs {sorted(unknown)} not in {self._callback_tensor_inputs}")

    @torch.no_grad()
    def __call__(
        self,
        prompt: list[str] | str,
        negative_prompt: list[str] | str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 4.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[[Any, int, Any, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Render one image per prompt.

        With ``guidance_scale > 1`` each step runs the UNet once on the batch
        [unconditional, conditional], where the unconditional branch is the negative
        prompt (or "" without one), exactly as in Stable Diffusion. A list of generators
        gives image i its noise from ``generator[i]`` alone, so an image does not depend
        on its batch.
        """
        self._interrupt = False
        self._guidance_scale = guidance_scale
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if negative_prompt is None:
            negative_prompts = [""] * len(prompts)
        elif isinstance(negative_prompt, str):
            negative_prompts = [negative_prompt] * len(prompts)
        else:
            negative_prompts = list(negative_prompt)
        native = self.unet.config.sample_size
        height = height or native
        width = width or native
        self.check_inputs(prompts, negative_prompts, height, width, num_inference_steps, generator, output_type,
                          callback_on_step_end_tensor_inputs)

        device = self._execution_device
        batch = len(prompts)
        prompt_embeds = self.encode_prompt(prompts, device)
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([self.encode_prompt(negative_prompts, device), prompt_embeds])
        prompt_embeds = prompt_embeds.to(self.unet.dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        shape = (batch, self.unet.config.in_channels, height, width)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator)

        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                noise_pred = self.predict_noise(latents, t, prompt_embeds)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    local_vars = {"latents": latents, "prompt_embeds": prompt_embeds}
                    callback_kwargs = {k: local_vars[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.get("latents", latents)
                    prompt_embeds = callback_outputs.get("prompt_embeds", prompt_embeds)
                progress.update()

        # Pixel space: the "latents" are the image in [-1, 1].
        image = (latents.float() / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            image = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)

