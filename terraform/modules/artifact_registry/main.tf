/**
 * The Docker repository of the stage images (`<region>-docker.pkg.dev/<project>/<repository>/<stage>`),
 * with vulnerability scanning and a cleanup policy that keeps the most recent versions. Cloud Run
 * pulls with its service agent (same project), so no reader grants are needed.
 */

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold no customer data (code and public models); Google-managed encryption is enough.
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  description   = "Heimdex stage images"
  format        = "DOCKER"
  labels        = var.labels

  docker_config {
    immutable_tags = var.immutable_tags
  }

  vulnerability_scanning_config {
    enablement_config = "INHERITED"
  }

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.keep_versions
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "writers" {
  for_each = var.writers

  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = each.value
}
