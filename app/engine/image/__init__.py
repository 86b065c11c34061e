"""Image helpers of the engine: resize modes, colour correction and the upscaler registry."""
