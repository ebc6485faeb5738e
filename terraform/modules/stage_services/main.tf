/**
 * One Cloud Run (v2) service per pipeline stage, `heimdex-<stage>` (the name the code looks services
 * up by), each with its own service account, reachable only from inside the project (Cloud Tasks
 * counts as internal) and invocable only by the Cloud Tasks OIDC invoker account.
 *
 * Stage URLs: HEIMDEX_STAGE_URLS is set from the deterministic Cloud Run URLs
 * `https://<service>-<project number>.<region>.run.app`, computed from inputs rather than from the
 * services' `uri` attributes, so every service can know every other one without a dependency
 * cycle and without run.viewer. The same URL is the OIDC audience on both sides (the dispatcher
 * signs for it, the stage verifies against it).
 */

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # The code looks up `heimdex-<stage>` when a stage has no URL in HEIMDEX_STAGE_URLS: keep the names.
  service_names = { for s in var.stages : s => "heimdex-${s}" }
  urls = {
    for s, name in local.service_names : s => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }
  # What each stage needs; tfvars may override single fields (stage_settings). Request timeouts fit
  # the work: probe reads headers, the GPU stages and shot detection decode the whole video.
  cpu_stage = { cpu = "2", memory = "4Gi", gpu = false, timeout_s = 900, concurrency = 1, min_instances = 0, max_instances = 10 }
  gpu_stage = { cpu = "4", memory = "16Gi", gpu = true, timeout_s = 1800, concurrency = 1, min_instances = 0, max_instances = 3 }
  base_settings = {
    probe  = merge(local.cpu_stage, { cpu = "1", memory = "2Gi", timeout_s = 300, concurrency = 4 })
    asr    = local.gpu_stage
    shots  = merge(local.cpu_stage, { timeout_s = 1800 })
    ocr    = merge(local.cpu_stage, { timeout_s = 1800 })
    vision = local.gpu_stage
    # Faces: dlib's HOG detector on the CPU (HEIMDEX_FACES_DETECTOR=cnn wants a GPU build of dlib).
    faces  = merge(local.cpu_stage, { timeout_s = 1800 })
    index  = merge(local.cpu_stage, { timeout_s = 900 })
  }
  settings = {
    for s in var.stages : s => merge(
      lookup(local.base_settings, s, local.cpu_stage),
      { for k, v in try(var.stage_settings[s], {}) : k => v if v != null },
    )
  }

  # The HEIMDEX_* contract of the stage services (tests/test_terraform.py checks it against
  # heimdex.config.Settings). HEIMDEX_HOME: the image's file system is read-only but /tmp.
  common_env = {
    HEIMDEX_HOME                = "/tmp/heimdex"
    HEIMDEX_PROJECT             = var.project_id
    HEIMDEX_REGION              = var.region
    HEIMDEX_DERIVED_BUCKET      = var.derived_bucket
    HEIMDEX_JOB_STORE           = "firestore"
    HEIMDEX_FIRESTORE_DATABASE  = var.firestore_database
    HEIMDEX_JOBS_COLLECTION     = var.jobs_collection
    HEIMDEX_JOB_TTL_DAYS        = tostring(var.job_ttl_days)
    HEIMDEX_DISPATCH            = "cloud_tasks"
    HEIMDEX_TASKS_LOCATION      = var.region
    HEIMDEX_TASKS_QUEUE_PREFIX  = var.queue_prefix
    HEIMDEX_TASKS_INVOKER_EMAIL = var.tasks_invoker_email
    HEIMDEX_STAGE_URLS          = jsonencode(local.urls)
    HEIMDEX_VERIFY_TASK_TOKENS  = "true"
    HEIMDEX_MAX_ATTEMPTS        = tostring(var.max_attempts)
    HEIMDEX_DB_POOL_SIZE        = tostring(var.db_pool_size)
    HEIMDEX_CLOUDSQL_INSTANCE   = var.cloudsql_instance
    HEIMDEX_CLOUDSQL_DATABASE   = var.cloudsql_database
  }
  # Per-stage additions: the GPU stages run Whisper in float16 on the L4.
  component_env = {
    asr = { HEIMDEX_ASR_COMPUTE_TYPE = "float16" }
  }
  # Secret environment variables (none: the database takes IAM authentication, no password).
  secret_env = {}
  # The stages that read the video from its source read drive:// with the organisation's own grant
  # (or the service's own account for folders the operator mapped): they alone get the Drive settings
  # and secrets.
  drive_env = {
    HEIMDEX_DRIVE_SA_FOLDERS        = jsonencode(var.drive_sa_folders)
    HEIMDEX_DRIVE_OAUTH_CLIENT_ID   = var.drive_oauth_client_id
    HEIMDEX_DRIVE_GRANTS_COLLECTION = var.drive_grants_collection
  }
  drive_secret_env = merge(
    { HEIMDEX_DRIVE_TOKEN_KEY = { secret = var.drive_token_key_secret_id, version = var.drive_token_key_secret_version } },
    var.drive_oauth_client_id == "" ? {} : {
      HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET = { secret = var.drive_oauth_client_secret_id, version = var.drive_oauth_client_secret_version }
    },
  )
}

resource "google_cloud_run_v2_service" "stage" {
  for_each = local.service_names

  project             = var.project_id
  name                = each.value
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels              = merge(var.labels, { stage = each.key })

  template {
    service_account                  = var.service_accounts[each.key]
    timeout                          = "${local.settings[each.key].timeout_s}s"
    max_instance_request_concurrency = local.settings[each.key].concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    gpu_zonal_redundancy_disabled    = local.settings[each.key].gpu ? true : null

    scaling {
      min_instance_count = local.settings[each.key].min_instances
      max_instance_count = local.settings[each.key].max_instances
    }

    dynamic "node_selector" {
      for_each = local.settings[each.key].gpu ? ["nvidia-l4"] : []
      content {
        accelerator = node_selector.value
      }
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = var.network_name
        subnetwork = var.subnet_name
      }
    }

    containers {
      image = "${var.image_repository}/${each.key}:${var.image_tag}"

      ports {
        container_port = 8080
      }

      resources {
        limits = merge(
          { cpu = local.settings[each.key].cpu, memory = local.settings[each.key].memory },
          local.settings[each.key].gpu ? { "nvidia.com/gpu" = "1" } : {},
        )
        # GPU instances need CPU always allocated; CPU stages only work while a task is in flight.
        cpu_idle          = !local.settings[each.key].gpu
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(
          local.common_env,
          lookup(local.component_env, each.key, {}),
          contains(var.source_stages, each.key) ? local.drive_env : {},
          { HEIMDEX_TORCH_THREADS = local.settings[each.key].cpu },
        )
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = merge(local.secret_env, contains(var.source_stages, each.key) ? local.drive_secret_env : {})
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }

      # The server listens only after the stage's model is loaded (worker.preload).
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 10
        timeout_seconds       = 5
        failure_threshold     = 30
        tcp_socket {
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = google_cloud_run_v2_service.stage

  project  = var.project_id
  location = each.value.location
  name     = each.value.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.tasks_invoker_email}"
}
