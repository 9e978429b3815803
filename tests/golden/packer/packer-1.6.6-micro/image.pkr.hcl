# Rendered by nomadic for image definition almalinux9; edit packer/ or scripts/, not this file.
# Two sources bake the same image: oracle-oci (in your tenancy) and qemu (a local qcow2 from AlmaLinux's
# GenericCloud image). Packer is run from this directory: every relative path below is relative to it.
# Every value is a variable with the definition's/settings' value as default; override with -var name=value.

variable "image_name" {
  type        = string
  description = "Prefix of the produced image's name; a UTC timestamp is appended."
  default     = "nomadic-almalinux9"
  validation {
    condition     = length(var.image_name) > 0 && length(var.image_name) <= 200
    error_message = "The image_name must be 1-200 characters."
  }
}

variable "docker_ce_version" {
  type        = string
  description = "Exact docker-ce / docker-ce-cli version from download.docker.com."
  default     = "28.5.1"
  validation {
    condition     = length(split(".", var.docker_ce_version)) == 3
    error_message = "The docker_ce_version must be a version like 28.5.1."
  }
}

variable "nomad_version" {
  type        = string
  description = "Exact Nomad version from rpm.releases.hashicorp.com."
  default     = "1.10.3"
  validation {
    condition     = length(split(".", var.nomad_version)) == 3
    error_message = "The nomad_version must be a version like 1.10.3."
  }
}

variable "consul_version" {
  type        = string
  description = "Exact Consul version from rpm.releases.hashicorp.com."
  default     = "1.21.4"
  validation {
    condition     = length(split(".", var.consul_version)) == 3
    error_message = "The consul_version must be a version like 1.21.4."
  }
}

variable "extra_packages" {
  type        = list(string)
  description = "More RPMs installed with the base packages."
  default     = []
}

variable "swap_mb" {
  type        = number
  description = "Size of the swap file in MiB (0: none)."
  default     = 1024
  validation {
    condition     = var.swap_mb >= 0
    error_message = "The swap_mb must not be negative."
  }
}

variable "tags" {
  type        = map(string)
  description = "Freeform tags on the OCI image and the build instance."
  default     = { "built-by" = "nomadic", "nomadic-image" = "almalinux9", "docker-ce-version" = "28.5.1", "nomad-version" = "1.10.3", "consul-version" = "1.21.4" }
}

# ---- oracle-oci ----------------------------------------------------------------------------------------------

variable "oci_config_file" {
  type        = string
  description = "OCI SDK config file holding the API-key profile (setting oci.config_file)."
  default     = "/home/user/.oci/config"
}

variable "oci_profile" {
  type        = string
  description = "Profile in oci_config_file (setting oci.profile)."
  default     = "DEFAULT"
}

variable "availability_domain" {
  type        = string
  description = "Availability domain of the build instance (first of oci.availability_domains)."
  default     = "Uocm:EU-FRANKFURT-1-AD-1"
}

variable "compartment_ocid" {
  type        = string
  description = "Compartment of the build instance and the image; empty: the tenancy (oci.compartment_id)."
  default     = "ocid1.compartment.oc1..aaaaaaaatestcompartment"
}

variable "subnet_ocid" {
  type        = string
  description = "Subnet of the build instance; it needs a route to the internet for dnf (oci.subnet_id)."
  default     = "ocid1.subnet.oc1.eu-frankfurt-1.aaaaaaaatestsubnet"
}

variable "shape" {
  type        = string
  description = "Shape of the build instance (oci.shape)."
  default     = "VM.Standard.E2.1.Micro"
  validation {
    condition     = length(var.shape) > 0
    error_message = "The shape must not be empty."
  }
}

variable "boot_volume_gb" {
  type        = number
  description = "Boot volume of the build instance in GB (oci.boot_volume_gb)."
  default     = 50
  validation {
    condition     = var.boot_volume_gb >= 50
    error_message = "The boot_volume_gb must be at least 50 (OCI's minimum boot volume)."
  }
}

variable "oci_ssh_user" {
  type        = string
  description = "Login user of the OCI base image (oci.ssh_user)."
  default     = "opc"
}

variable "base_image_os" {
  type        = string
  description = "Operating system of the base image to look up (oci.base_image_filter.operating_system)."
  default     = "AlmaLinux"
}

variable "base_image_os_version" {
  type        = string
  description = "Operating system version of the base image (oci.base_image_filter.operating_system_version)."
  default     = "9"
}

variable "base_image_name_search" {
  type        = string
  description = "Regular expression on the base image's display name (oci.base_image_filter.display_name_search)."
  default     = "^AlmaLinux-9"
}

# ---- qemu ----------------------------------------------------------------------------------------------------

variable "base_urls" {
  type        = list(string)
  description = "AlmaLinux 9 GenericCloud qcow2, tried in order (local.urls in the image definition)."
  default     = ["https://repo.almalinux.org/almalinux/9.7/cloud/x86_64/images/AlmaLinux-9-GenericCloud-9.7-20251118.x86_64.qcow2", "https://vault.almalinux.org/9.7/cloud/x86_64/images/AlmaLinux-9-GenericCloud-9.7-20251118.x86_64.qcow2"]
}

variable "base_checksum" {
  type        = string
  description = "sha256:<digest> of the qcow2, or file:<url> of AlmaLinux's CHECKSUM file."
  default     = "sha256:5ff9c048859046f41db4a33b1f1a96675711288078aac66b47d0be023af270d1"
}

variable "accelerator" {
  type        = string
  description = "kvm when /dev/kvm works, tcg (slow emulation) otherwise (setting local.accel)."
  default     = "tcg"
  validation {
    condition     = contains(["kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be kvm or tcg."
  }
}

variable "cpu_model" {
  type        = string
  description = "QEMU CPU model: host under KVM, max under TCG (AlmaLinux 9 needs x86-64-v2)."
  default     = "max"
}

variable "memory_mb" {
  type        = number
  description = "Memory of the build VM in MiB."
  default     = 2048
}

variable "cpus" {
  type        = number
  description = "CPUs of the build VM."
  default     = 2
}

variable "disk_size" {
  type        = string
  description = "Disk of the build VM (and the image), e.g. 20G."
  default     = "20G"
}

variable "local_ssh_user" {
  type        = string
  description = "Default user of the GenericCloud image; the NoCloud seed gives it the build key (local.ssh_user)."
  default     = "almalinux"
}

locals {
  timestamp  = formatdate("YYYYMMDD-hhmmss", timestamp())
  image_name = "${var.image_name}-${local.timestamp}"
}

source "oracle-oci" "almalinux" {
  access_cfg_file         = var.oci_config_file
  access_cfg_file_account = var.oci_profile
  availability_domain     = var.availability_domain
  compartment_ocid        = var.compartment_ocid
  subnet_ocid             = var.subnet_ocid
  shape                   = var.shape
  base_image_filter {
    operating_system         = var.base_image_os
    operating_system_version = var.base_image_os_version
    display_name_search      = var.base_image_name_search
  }
  disk_size               = var.boot_volume_gb
  image_name              = local.image_name
  instance_name           = "packer-${local.image_name}"
  ssh_username            = var.oci_ssh_user
  ssh_timeout             = "20m"
  tags                    = var.tags
  instance_tags           = var.tags
}

source "qemu" "almalinux" {
  iso_urls             = var.base_urls
  iso_checksum         = var.base_checksum
  disk_image           = true
  format               = "qcow2"
  disk_size            = var.disk_size
  disk_interface       = "virtio"
  disk_compression     = true
  net_device           = "virtio-net"
  accelerator          = var.accelerator
  qemuargs             = [["-cpu", var.cpu_model]]
  memory               = var.memory_mb
  cpus                 = var.cpus
  headless             = true
  cd_files             = ["seed/user-data", "seed/meta-data"]
  cd_label             = "cidata"
  ssh_username         = var.local_ssh_user
  ssh_private_key_file = "ssh/build_key"
  ssh_timeout          = "45m"
  shutdown_command     = "sudo systemctl poweroff"
  output_directory     = "output/${local.image_name}"
  vm_name              = "${local.image_name}.qcow2"
}

build {
  sources = ["source.oracle-oci.almalinux", "source.qemu.almalinux"]

  # Units, firewalld services and other files rendered from nomadic/imagefacts.py, installed by the scripts.
  provisioner "file" {
    source      = "nomadic-files"
    destination = "/tmp"
  }

  provisioner "shell" {
    execute_command = "chmod +x '{{ .Path }}'; sudo -E env {{ .Vars }} '{{ .Path }}'"
    environment_vars = [
      "NOMADIC_FILES=/tmp/nomadic-files",
      "DOCKER_CE_VERSION=${var.docker_ce_version}",
      "NOMAD_VERSION=${var.nomad_version}",
      "CONSUL_VERSION=${var.consul_version}",
      "EXTRA_PACKAGES=${join(" ", var.extra_packages)}",
      "SWAP_MB=${var.swap_mb}",
    ]
    scripts = [
      "scripts/10-wait-boot.sh",
      "scripts/15-create-swap.sh",
      "scripts/20-install-packages.sh",
      "scripts/30-install-docker.sh",
      "scripts/40-install-hashicorp.sh",
      "scripts/42-lock-versions.sh",
      "scripts/45-prepare-dirs.sh",
      "scripts/50-install-units.sh",
      "scripts/60-install-firewalld.sh",
      "scripts/75-configure-kernel.sh",
      "scripts/80-enforce-selinux.sh",
      "scripts/90-clean-identity.sh",
      "scripts/99-check-image.sh",
    ]
  }

  provisioner "shell" {
    inline = ["sudo rm -rf /tmp/nomadic-files"]
  }

  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = false
    custom_data = {
      image_definition  = "almalinux9"
      image_name        = local.image_name
      docker_ce_version = var.docker_ce_version
      nomad_version     = var.nomad_version
      consul_version    = var.consul_version
    }
  }
}
