"""Job modes: one module per kind of job (txt2img, hires, img2img, inpaint, folder batch, SD upscale, extras) and the kind → runner table."""
