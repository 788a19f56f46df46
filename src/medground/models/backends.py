"""placeholder"""
from __future__ import annotations
import torch

class TorchBackend:
    name = "torch"
    def __init__(self, model):
        self.module = model.image_encoder
    def run(self, images, batch_size=None):
        return self.module(images)

def get_backend(model, spec):
    if not isinstance(spec, str):
        return spec
    return TorchBackend(model)
