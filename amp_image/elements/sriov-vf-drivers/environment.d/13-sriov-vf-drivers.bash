# Kernel modules for SR-IOV Virtual Functions (and the PF drivers Octavia
# operators pass through), checked against the image's kernel at build time.
export DIB_AMP_VF_DRIVERS=${DIB_AMP_VF_DRIVERS:-"iavf ixgbevf igbvf mlx5_core mlx4_core bnxt_en qede ice i40e"}
