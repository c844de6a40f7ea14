"""Spec -> nn.Module: the blocks, trunks, heads and pyramids that resnet-inspect builds."""
