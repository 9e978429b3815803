# Rendered by `invoke deploy echo` from jobs/echo.nomad.hcl.j2; edit the template, not this file.
job "echo" {
  datacenters = ["dc1"]
  type        = "service"

  group "echo" {
    # One per client node: a static port can be bound once per node, so a higher count would never place
    # (deploy refuses it before submitting).
    count = 2

    spread {
      attribute = "${node.unique.id}"
    }

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "http" {
        static = 5678
        to     = 5678
      }
    }

    service {
      name     = "echo"
      port     = "http"
      provider = "consul"

      check {
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "3m"
      progress_deadline = "5m"
      auto_revert       = true
    }

    task "http-echo" {
      driver = "docker"

      config {
        image = "hashicorp/http-echo:1.0"
        ports = ["http"]
        args  = ["-listen", ":5678", "-text", "hello world"]
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
