# Keep CPU 0 for the kernel and housekeeping; haproxy gets the others.
export DIB_BOOTLOADER_DEFAULT_CMDLINE="${DIB_BOOTLOADER_DEFAULT_CMDLINE:-nofb nomodeset gfxpayload=text} nohz=on nohz_full=1-N rcu_nocbs=1-N irqaffinity=0"
