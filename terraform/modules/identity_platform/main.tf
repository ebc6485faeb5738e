/**
 * Identity Platform: how users sign in to the search API and register Drive folders. Email and
 * password sign-in is on (others, e.g. SAML or OIDC providers of a customer's directory, are added
 * in the console or with google_identity_platform_*_idp_config); the functions verify its ID tokens
 * (HEIMDEX_AUTH_MODE=identity_platform: issuer https://securetoken.google.com/<project>, audience
 * <project>). The organisation is the custom claim `org_id`, which only an administrator sets
 * (Admin SDK set_custom_user_claims); see the repository README, "Signing in".
 */

resource "google_identity_platform_config" "this" {
  project                    = var.project_id
  autodelete_anonymous_users = true

  sign_in {
    allow_duplicate_emails = false

    email {
      enabled           = true
      password_required = true
    }

    anonymous {
      enabled = false
    }
  }
}
