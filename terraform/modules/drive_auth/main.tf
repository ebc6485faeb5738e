/**
 * Secrets of organisations' own Drive access (issue 11, finding 1):
 *
 * - the token key: 32 random bytes (base64) that seal organisations' OAuth refresh tokens (AES-GCM)
 *   and sign consent states: HEIMDEX_DRIVE_TOKEN_KEY. Generated here, so it is in Terraform state,
 *   like the database password: keep the state bucket private.
 * - the OAuth client secret of the web client organisations consent to: HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET.
 *   Google offers no API to create such a client: create it in the console (redirect URI: the
 *   `drive_oauth_redirect_uri` output), then add the secret as a version of this secret by hand.
 *
 * Only `accessors` (drive_watch and the stages that read videos from their source) may read them.
 */

resource "random_bytes" "token_key" {
  length = 32
}

resource "google_secret_manager_secret" "token_key" {
  project   = var.project_id
  secret_id = var.token_key_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "token_key" {
  secret      = google_secret_manager_secret.token_key.id
  secret_data = random_bytes.token_key.base64
}

resource "google_secret_manager_secret" "oauth_client_secret" {
  project   = var.project_id
  secret_id = var.oauth_client_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "token_key" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.token_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}

resource "google_secret_manager_secret_iam_member" "oauth_client_secret" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.oauth_client_secret.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}
