"""The vectorized executor (torch.func): many runs of one architecture trained at once.

Not yet built: this module registers nothing until it is.
"""
