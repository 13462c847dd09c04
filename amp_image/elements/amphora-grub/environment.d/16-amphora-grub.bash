# The EFI system partition is a mounted FAT file system, as DIB makes it: the
# bootloader element runs grub-install.  amp-image sets 1 on a build host
# whose kernel cannot mount vfat (it stages the partition in a folder).
export DIB_AMP_ESP_STAGED=${DIB_AMP_ESP_STAGED:-0}
