"""The network: embeddings, backbones and the VALL-E model. Never imports `lightning`."""
