# Rendered by `invoke deploy web` from jobs/web.nomad.hcl.j2; edit the template, not this file.
job "web" {
  datacenters = ["dc1"]
  type        = "service"

  group "web" {
    count = 2

    spread {
      attribute = "${node.unique.id}"
    }

    network {
      # A dynamic port: several instances may share a node, HAProxy learns the ports from Consul.
      port "http" {
        to = 8080
      }
    }

    service {
      name     = "web"
      port     = "http"
      provider = "consul"
      tags     = ["nomadic"]

      # Consul takes an instance out of `service "web"` (and so out of HAProxy) once this fails.
      check {
        name     = "web-http"
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "10s"
      healthy_deadline  = "3m"
      progress_deadline = "5m"
      auto_revert       = true
    }

    task "nginx" {
      driver = "docker"

      config {
        image = "nginx:1.27-alpine"
        args  = ["nginx", "-c", "/local/nginx.conf", "-g", "daemon off;"]
        ports = ["http"]
      }

      template {
        destination = "local/nginx.conf"
        change_mode = "signal"
        change_signal = "SIGHUP"
        data        = <<EOT
worker_processes 1;
error_log stderr notice;
pid /tmp/nginx.pid;

events {
    worker_connections 256;
}

http {
    access_log /dev/stdout;
    default_type text/html;
    # Writable places in the container for nginx's buffers (the image's own paths need its default config).
    client_body_temp_path /tmp/nginx-client-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;

    server {
        listen 8080;
        root {{ env "NOMAD_TASK_DIR" }}/www;

        location = /healthz {
            access_log off;
            default_type text/plain;
            return 200 "ok\n";
        }

        location / {
            index index.html;
        }
    }
}
EOT
      }

      template {
        destination = "local/www/index.html"
        data        = <<EOT
<!doctype html>
<html>
<head><title>demo</title></head>
<body>
<h1>Hello from demo</h1>
<p>Served by nginx, allocation {{ env "NOMAD_ALLOC_NAME" }}, behind HAProxy.</p>
</body>
</html>
EOT
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
