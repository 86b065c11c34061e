#!/usr/bin/env bash
#########################################################
# Uncomment and change the variables below to your need:#
#########################################################

# Command-line flags for Atelier (the same names as AUTOMATIC1111), e.g.
#   --api                      serve the HTTP API under /sdapi/v1
#   --listen                   serve other computers on the network (add --gradio-auth/--api-auth!)
#   --data-dir /path/to/stable-diffusion-webui    reuse an existing A1111 install's models and settings
#   --ckpt-dir DIR --lora-dir DIR --embeddings-dir DIR
#   --medvram / --lowvram / --no-half / --no-half-vae / --use-cpu all
#export COMMANDLINE_ARGS=""

# python3 executable used to create the virtual environment
#python_cmd="python3"

# Folder of the virtual environment ("-" = use python_cmd directly, install nothing)
#venv_dir="venv"

# The torch build is chosen on the first install (CPU build without an NVIDIA/AMD GPU, CUDA with one, ROCm, MPS).
# To choose it yourself (first run only, or after deleting venv/), either name an index:
#export TORCH_INDEX_URL="https://download.pytorch.org/whl/cu124"
# or give the whole pip command:
#export TORCH_COMMAND="pip install torch torchvision --index-url https://download.pytorch.org/whl/cu124"

###########################################
