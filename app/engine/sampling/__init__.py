"""Sampling: the A1111 sampler names (pure), their diffusers schedulers, sigma schedules and a job's sampler set-up."""
