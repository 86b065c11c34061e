"""k-diffusion samplers written as diffusers schedulers where no diffusers class does what A1111 does."""
