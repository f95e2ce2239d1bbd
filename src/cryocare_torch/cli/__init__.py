"""The ``cryocare`` command-line interface (thin wrappers over :mod:`cryocare_torch.workflows.api`)."""
