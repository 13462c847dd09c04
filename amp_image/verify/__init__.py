"""Verify: boot an image in QEMU with a config drive and check it (SSH, agent API, SR-IOV,
Octavia's own controller driver), and check controller certificates against the agent."""
