"""CLADE: unpaired CycleGAN on in-plane/through-plane patches."""
