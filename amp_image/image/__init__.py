"""Reading a built image, for verify and publish alike: its offline mount, its record, qemu-img."""
