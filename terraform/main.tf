/**
 * The root module: one Heimdex environment. Every environment runs this same module; envs/<env>/
 * holds only its values (terraform.tfvars) and its state location (backend.hcl), passed by
 * `make plan ENV=<env>` (-var-file, -backend-config).
 */

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, { app = "heimdex", env = var.environment })
}

locals {
  repo_root = abspath("${path.module}/..")
  # Every folder in functions/ gets its resources (tests/test_terraform.py checks it).
  functions = sort([for f in fileset("${local.repo_root}/functions", "*/main.py") : dirname(f)])
  # stage => stages it needs: the graph of heimdex.core.graph.PIPELINE (tests/test_terraform.py keeps
  # them equal). Every stage gets a service, a queue and an account; its image is built from
  # containers/Dockerfile with the arguments its declaration gives.
  pipeline = {
    probe  = []
    asr    = ["probe"]
    shots  = ["probe"]
    ocr    = ["shots"]
    vision = ["shots"]
    faces  = ["shots"]
    index  = ["asr", "ocr", "vision", "faces"]
  }
  stages = sort(keys(local.pipeline))
  # Stages that read the video itself (from the bucket, or Drive with the organisation's grant).
  source_stages = ["probe", "asr", "shots", "faces"]
  # Functions that read Drive with an organisation's grant: drive_watch (changes), search (streams
  # Drive media to signed media URLs).
  drive_functions = ["drive_watch", "search"]
}

module "project_services" {
  source     = "./modules/project_services"
  project_id = var.project_id
}

module "network" {
  source     = "./modules/network"
  project_id = var.project_id
  region     = var.region

  depends_on = [module.project_services]
}

module "service_accounts" {
  source             = "./modules/service_accounts"
  project_id         = var.project_id
  functions          = local.functions
  stages             = local.stages
  firestore_database = var.firestore_database

  depends_on = [module.project_services]
}

module "storage" {
  source               = "./modules/storage"
  project_id           = var.project_id
  location             = var.region
  create_source_bucket = var.create_source_bucket
  force_destroy        = var.force_destroy
  soft_delete_seconds  = var.soft_delete_seconds
  audit_data_access    = var.audit_data_access

  # The derived bucket is versioned; replaced or deleted objects are kept this long.
  derived_noncurrent_days = var.derived_noncurrent_days

  # Stages that read the video itself (faces decodes frames between keyframes too); ocr and vision
  # read keyframes from the derived bucket. search signs URLs of source objects (a signed URL can read
  # only what its signer can) and streams thumbnails and sidecars from the derived bucket.
  source_readers = merge(
    { for s in local.source_stages : "stage-${s}" => module.service_accounts.members["stage-${s}"] },
    { "fn-search" = module.service_accounts.members["fn-search"] },
  )
  derived_readers = { "fn-search" = module.service_accounts.members["fn-search"] }
  # search signs uploads into <org>/uploads/ of the source bucket.
  upload_creators = { "fn-search" = module.service_accounts.members["fn-search"] }
  # Every stage writes its output; ingest and drive_watch delete a removed source's derived files.
  derived_writers = merge(
    { for s in local.stages : "stage-${s}" => module.service_accounts.members["stage-${s}"] },
    {
      "fn-ingest"      = module.service_accounts.members["fn-ingest"]
      "fn-drive_watch" = module.service_accounts.members["fn-drive_watch"]
    },
  )
  functions_readers = { "fn-build" = module.service_accounts.members["fn-build"] }

  depends_on = [module.project_services]
}

module "firestore" {
  source            = "./modules/firestore"
  project_id        = var.project_id
  location          = var.firestore_location
  database_name     = var.firestore_database
  ttl_collections   = [var.jobs_collection, var.events_collection]
  delete_protection = var.deletion_protection

  depends_on = [module.project_services]
}

module "cloudsql" {
  source              = "./modules/cloudsql"
  project_id          = var.project_id
  region              = var.region
  private_network_id  = module.network.private_network_id
  database_version    = var.sql_database_version
  tier                = var.sql_tier
  high_availability   = var.sql_high_availability
  deletion_protection = var.deletion_protection
  database_flags      = var.sql_database_flags

  # Automated backups with point-in-time recovery.
  retained_backups               = var.sql_retained_backups
  transaction_log_retention_days = var.sql_transaction_log_days

  # Every function and stage opens the index as an application user (IAM database authentication);
  # only the maintenance job's account owns the schema.
  app_service_accounts = merge(
    { for f in local.functions : "fn-${f}" => module.service_accounts.emails["fn-${f}"] },
    { for s in local.stages : "stage-${s}" => module.service_accounts.emails["stage-${s}"] },
  )
  owner_service_account = module.service_accounts.emails["db-owner"]
}

module "identity_platform" {
  source     = "./modules/identity_platform"
  project_id = var.project_id

  depends_on = [module.project_services]
}

module "db_maintenance" {
  source                    = "./modules/db_maintenance"
  project_id                = var.project_id
  region                    = var.region
  service_account           = module.service_accounts.emails["db-owner"]
  scheduler_service_account = module.service_accounts.emails["scheduler"]
  image_repository          = module.artifact_registry.repository_url
  image_tag                 = var.image_tag
  network_name              = module.network.network_name
  subnet_name               = module.network.serverless_subnet_name
  cloudsql_instance         = module.cloudsql.connection_name
  cloudsql_database         = module.cloudsql.database_name
  app_database_users        = module.cloudsql.app_users
  deletion_protection       = var.deletion_protection

  depends_on = [module.project_services]
}

# Organisations' own Drive access: the key sealing their refresh tokens, the OAuth client secret.
module "drive_auth" {
  source     = "./modules/drive_auth"
  project_id = var.project_id

  accessors = merge(
    { for f in local.drive_functions : "fn-${f}" => module.service_accounts.members["fn-${f}"] },
    { for s in local.source_stages : "stage-${s}" => module.service_accounts.members["stage-${s}"] },
  )

  depends_on = [module.project_services]
}

# Signed media URLs of the search API: one HMAC key for every instance, and the right to sign V4 URLs
# of bucket objects as itself (IAM signBlob; the function has no key file).
module "media_urls" {
  source     = "./modules/media_urls"
  project_id = var.project_id

  accessors = { "fn-search" = module.service_accounts.members["fn-search"] }
  signers = {
    "fn-search" = { id = module.service_accounts.ids["fn-search"], member = module.service_accounts.members["fn-search"] }
  }

  depends_on = [module.project_services]
}

module "artifact_registry" {
  source     = "./modules/artifact_registry"
  project_id = var.project_id
  region     = var.region
  writers    = var.image_pushers

  depends_on = [module.project_services]
}

module "task_queues" {
  source         = "./modules/task_queues"
  project_id     = var.project_id
  region         = var.region
  queue_prefix   = var.queue_prefix
  queue_settings = var.queue_settings
  pipeline       = local.pipeline

  entry_enqueuers = {
    "fn-ingest"      = module.service_accounts.members["fn-ingest"]
    "fn-drive_watch" = module.service_accounts.members["fn-drive_watch"]
  }
  stage_members              = { for s in local.stages : s => module.service_accounts.members["stage-${s}"] }
  invoker_service_account_id = module.service_accounts.ids["tasks-invoker"]

  depends_on = [module.project_services]
}

module "stage_services" {
  source              = "./modules/stage_services"
  project_id          = var.project_id
  region              = var.region
  stages              = local.stages
  service_accounts    = module.service_accounts.stage_emails
  image_repository    = module.artifact_registry.repository_url
  image_tag           = var.image_tag
  network_name        = module.network.network_name
  subnet_name         = module.network.serverless_subnet_name
  derived_bucket      = module.storage.derived_bucket
  firestore_database  = module.firestore.database_name
  jobs_collection     = var.jobs_collection
  job_ttl_days        = var.job_ttl_days
  queue_prefix        = var.queue_prefix
  tasks_invoker_email = module.service_accounts.emails["tasks-invoker"]
  max_attempts        = var.max_attempts
  cloudsql_instance   = module.cloudsql.connection_name
  cloudsql_database   = module.cloudsql.database_name
  stage_settings      = var.stage_settings
  deletion_protection = var.deletion_protection

  source_stages                  = local.source_stages
  drive_sa_folders               = var.drive_sa_folders
  drive_oauth_client_id          = var.drive_oauth_client_id
  drive_grants_collection        = var.drive_grants_collection
  drive_token_key_secret_id      = module.drive_auth.token_key_secret_id
  drive_token_key_secret_version = module.drive_auth.token_key_secret_version
  drive_oauth_client_secret_id   = module.drive_auth.oauth_client_secret_id

  depends_on = [module.project_services]
}

module "functions" {
  source                    = "./modules/functions"
  project_id                = var.project_id
  region                    = var.region
  source_root               = "${local.repo_root}/functions"
  build_dir                 = "${path.module}/.build"
  functions_bucket          = module.storage.functions_bucket
  source_bucket             = module.storage.source_bucket
  service_accounts          = module.service_accounts.function_emails
  build_service_account_id  = module.service_accounts.ids["fn-build"]
  eventarc_service_account  = module.service_accounts.emails["eventarc"]
  scheduler_service_account = module.service_accounts.emails["scheduler"]
  vpc_connector             = module.network.connector_id
  derived_bucket            = module.storage.derived_bucket
  firestore_database        = module.firestore.database_name
  jobs_collection           = var.jobs_collection
  events_collection         = var.events_collection
  watches_collection        = var.watches_collection
  job_ttl_days              = var.job_ttl_days
  queue_prefix              = var.queue_prefix
  tasks_invoker_email       = module.service_accounts.emails["tasks-invoker"]
  stage_urls                = module.stage_services.urls
  stage_timeouts_s          = module.stage_services.timeouts_s
  queue_max_backoff_s       = module.task_queues.max_backoff_s
  google_audience           = var.google_audience
  cloudsql_instance         = module.cloudsql.connection_name
  cloudsql_database         = module.cloudsql.database_name
  function_settings         = var.function_settings

  drive_sa_folders               = var.drive_sa_folders
  drive_oauth_client_id          = var.drive_oauth_client_id
  drive_grants_collection        = var.drive_grants_collection
  drive_token_key_secret_id      = module.drive_auth.token_key_secret_id
  drive_token_key_secret_version = module.drive_auth.token_key_secret_version
  drive_oauth_client_secret_id   = module.drive_auth.oauth_client_secret_id

  media_url_key_secret_id      = module.media_urls.key_secret_id
  media_url_key_secret_version = module.media_urls.key_secret_version

  depends_on = [module.project_services, module.task_queues]
}
