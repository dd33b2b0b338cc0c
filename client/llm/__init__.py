"""One interface to a chat language model: any OpenAI-compatible endpoint, or a local model run
by llama.cpp (the embedded default). Consolidation is its user."""
