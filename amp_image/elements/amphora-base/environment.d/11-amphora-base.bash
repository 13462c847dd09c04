# Leave out what an amphora never uses (docs, man pages, translations, kernel
# modules for hardware no amphora has) and zero the free space, so the image
# is small.  Set to 0 to keep everything.
export DIB_AMP_SLIM=${DIB_AMP_SLIM:-1}
