# Upstream Octavia default since 2024.1: the agent programs nftables.
export DIB_OCTAVIA_AMP_USE_NFTABLES=${DIB_OCTAVIA_AMP_USE_NFTABLES:-True}
