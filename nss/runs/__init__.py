"""A run folder, the contract between the tools: its files, its configuration, and the trained model it holds."""
