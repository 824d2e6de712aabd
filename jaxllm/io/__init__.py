"""Model file formats: GGUF (`io.gguf`) and Hugging Face safetensors + config.json (`io.hf`)."""
