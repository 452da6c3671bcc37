"""ExecuTorch: the contract's graphs as one ``.pte`` program through torch.export and XNNPACK."""
