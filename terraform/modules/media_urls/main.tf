/**
 * What signed media URLs need in the cloud (issue 14, shared/heimdex/api/signing.py and
 * shared/heimdex/adapters/gcs.py `signed_url`):
 *
 * - one key for every instance of the API: HEIMDEX_MEDIA_URL_KEY, 32 random bytes (base64), the HMAC
 *   key of `/v1/media/...?exp=&sig=` URLs. Without it each instance would make its own, and a URL
 *   would open only on the instance that signed it. Generated here, so it is in Terraform state like
 *   the Drive token key: keep the state bucket private. Only `accessors` may read it.
 * - the right of the signing account to sign as itself: a bucket object's URL is a V4 signed URL,
 *   and the functions hold no key file, so the library signs through IAM signBlob
 *   (iamcredentials.googleapis.com) as the runtime account, which needs
 *   roles/iam.serviceAccountTokenCreator on itself, and on no other account.
 */

resource "random_bytes" "key" {
  length = 32
}

resource "google_secret_manager_secret" "key" {
  project   = var.project_id
  secret_id = var.key_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "key" {
  secret      = google_secret_manager_secret.key.id
  secret_data = random_bytes.key.base64
}

resource "google_secret_manager_secret_iam_member" "key" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}

# signBlob as itself: granted on the signer's own account, for that account only.
resource "google_service_account_iam_member" "self_sign" {
  for_each = var.signers

  service_account_id = each.value.id
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value.member
}
