"""MP-20 data: vendored and full loaders, the Qwen2.5 tokenizer files, and the prepare stage."""
