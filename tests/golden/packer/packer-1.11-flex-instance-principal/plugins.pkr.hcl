# Rendered by nomadic for image definition almalinux9; edit packer/ or scripts/, not this file.
# Rendered only for Packer >= 1.7 (1.6.6 has its builders built in and knows no required_plugins);
# `packer init` installs these before validate and build.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    oracle = {
      version = "~> 1.1"
      source  = "github.com/hashicorp/oracle"
    }
    qemu = {
      version = "~> 1.1"
      source  = "github.com/hashicorp/qemu"
    }
  }
}
