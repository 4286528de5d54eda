// clever-auth on Azure App Service (Linux, custom container), with its Key Vault and telemetry.
//
//   az deployment group create -g <group> --template-file deploy/main.bicep \
//     --parameters containerImage=<registry>.azurecr.io/clever-auth:<tag> containerRegistryName=<registry>
//
// What it makes (README.md, "Deploy to Azure", walks through it):
//   - Log Analytics workspace + workspace-based Application Insights;
//   - Key Vault with RBAC authorization, its AuditEvent log sent to the workspace;
//   - Linux App Service plan + Web App running the container, system-assigned identity granted
//     "Key Vault Secrets User" on the vault (the host reads clever-client-id/-secret with it);
//   - optionally: AcrPull for a user-assigned identity that pulls the image (no registry
//     password anywhere), "Key Vault Secrets Officer" for whoever loads the secrets, and
//     log alert rules.
//
// The Clever client id and secret are NOT parameters: they go into the vault afterwards
// (`az keyvault secret set`), so they never appear in a deployment's history.

targetScope = 'resourceGroup'

// ---- general ------------------------------------------------------------------------------

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Web App name (global: becomes <name>.azurewebsites.net).')
@minLength(2)
@maxLength(60)
param appName string = 'clever-auth-${uniqueString(resourceGroup().id)}'

@description('Container image to run, e.g. myregistry.azurecr.io/clever-auth:1.0.0 (built from the repository Dockerfile).')
param containerImage string

@description('Name of an Azure Container Registry in this resource group that holds the image. When set, a user-assigned identity with AcrPull pulls it; leave empty for a public image.')
param containerRegistryName string = ''

@description('App Service plan SKU. alwaysOn needs Basic or higher; B1 suits a first deployment, P0v3/P1v3 production.')
param appServicePlanSku string = 'B1'

@description('Number of instances. Without a shared Redis (sharedStore) each keeps its own in-memory tokens and calls Clever itself; with it they act as one Clever client.')
@minValue(1)
param instanceCount int = 1

@description('Run every instance on one Azure Managed Redis (TLS, Entra ID with the app\'s managed identity, no persistence): one token set, one refresher, one rate budget. Put a store key in the vault first: secret clever-auth-store-key, base64 of 32 random bytes.')
param sharedStore bool = false

@description('Azure Managed Redis SKU (sharedStore only). Balanced_B0 is the smallest; the store holds a few kB per district.')
param redisSku string = 'Balanced_B0'

@description('Key Vault name (global, 3-24 characters: letters, digits, single hyphens).')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-clever-${take(uniqueString(resourceGroup().id), 13)}'

@description('Purge protection on the vault. Once on it cannot be turned off, and a deleted vault keeps its name for the retention period.')
param keyVaultPurgeProtection bool = true

@description('Object id of a user or group that may write the Clever secrets into the vault ("Key Vault Secrets Officer"), e.g. `az ad signed-in-user show --query id -o tsv`. Empty: no such assignment.')
param secretsOfficerPrincipalId string = ''

@description('Kind of principal in secretsOfficerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string = 'User'

@description('Days the Log Analytics workspace keeps logs (Key Vault AuditEvent, container output).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Create the log alert rules (Clever API version problem; repeated token acquisition failures; Key Vault secret reads refused).')
param deployAlerts bool = true

@description('Resource id of an action group the alerts notify (e-mail, Teams, ...). Empty: alerts only show in Azure Monitor.')
param alertActionGroupId string = ''

// ---- host settings (README.md, "Host") ----------------------------------------------------

@description('Key Vault secret holding the Clever client id.')
param keyVaultSecretClientId string = 'clever-client-id'

@description('Key Vault secret holding the Clever client secret.')
param keyVaultSecretClientSecret string = 'clever-client-secret'

// ---- component settings (README.md, "Component settings"; defaults are the code's) --------

@description('clever_token_url: district-token listing or RFC 6749 token endpoint.')
param cleverTokenUrl string = 'https://clever.com/oauth/tokens'

@description('clever_api_base_url: data API base.')
param cleverApiBaseUrl string = 'https://api.clever.com'

@description('clever_api_version: data API version path segment.')
param cleverApiVersion string = 'v3.0'

@description('clever_grant: district_tokens or client_credentials.')
@allowed([
  'district_tokens'
  'client_credentials'
])
param cleverGrant string = 'district_tokens'

@description('clever_districts: comma-separated allow-list of district ids (empty = all).')
param cleverDistricts string = ''

@description('clever_token_lifetime_secs: lifetime when the endpoint gives no expires_in.')
param cleverTokenLifetimeSecs string = '3600'

@description('clever_refresh_fraction: refresh after this fraction of the lifetime (from 0.1 up to, not including, 1).')
param cleverRefreshFraction string = '0.75'

@description('clever_expiry_skew_secs: this close to expiry counts as expired.')
param cleverExpirySkewSecs string = '30'

@description('clever_retry_max: retries after transient failures.')
param cleverRetryMax string = '5'

@description('clever_retry_base_ms: first retry delay (doubling).')
param cleverRetryBaseMs string = '2000'

@description('clever_retry_max_delay_ms: cap on one retry delay.')
param cleverRetryMaxDelayMs string = '32000'

@description('clever_retry_jitter: randomised fraction of each delay (0 = exact schedule).')
param cleverRetryJitter string = '0'

@description('clever_http_timeout_ms: timeout of one HTTP attempt.')
param cleverHttpTimeoutMs string = '10000'

@description('clever_rate_limit_max_wait_secs: longest server rate-limit hint honoured.')
param cleverRateLimitMaxWaitSecs string = '120'

@description('clever_version_header: response header carrying the API version (empty = none).')
param cleverVersionHeader string = ''

@description('clever_refresh_jitter: fraction of the refresh point drawn at random earlier (0: exactly at clever_refresh_fraction).')
param cleverRefreshJitter string = '0'

@description('clever_probe_batch: connection probes per refresher run.')
param cleverProbeBatch string = '20'

@description('clever_probe_pace_ms: pause between two batches of probes.')
param cleverProbePaceMs string = '250'

@description('clever_alert_auth_failing_secs: authentication failing this long raises auth_failing.')
param cleverAlertAuthFailingSecs string = '900'

@description('clever_alert_rate_limited_secs: rate limiting this long raises rate_limited_prolonged.')
param cleverAlertRateLimitedSecs string = '600'

@description('clever_gateway_deadline_ms: how long one gateway request may take in all.')
param cleverGatewayDeadlineMs string = '30000'

// ---- names and constants ------------------------------------------------------------------

var useRegistry = !empty(containerRegistryName)

// The host serves this path (host/src/server/routing.rs); App Service probes it every minute.
var healthPath = '/health/clever-auth'
// The port the container listens on (the host's default; WEBSITES_PORT below tells App Service).
var containerPort = '8080'

// Built-in role definitions.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var redisName = 'redis-clever-${take(uniqueString(resourceGroup().id), 13)}'
// Azure Managed Redis databases listen for TLS here.
var redisPort = 10000

// ---- telemetry ----------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
  }
}

// ---- Key Vault ----------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Access by Azure RBAC role assignments only (no access policies).
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // The API accepts only true or absent here.
    enablePurgeProtection: keyVaultPurgeProtection ? true : null
    // App Service reaches the vault over its public endpoint (no VNet integration here).
    publicNetworkAccess: 'Enabled'
  }
}

// Every access to the vault (who, which secret, outcome) lands in the workspace:
// AZKVAuditLogs (resource-specific table).
resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'kv-audit'
  scope: vault
  properties: {
    workspaceId: workspace.id
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// ---- registry pull identity -------------------------------------------------------------------

// Pulls the image when containerRegistryName is set (it is created either way: it costs nothing
// and keeps the template free of references to resources that may not exist). Being
// user-assigned, it exists before the Web App, so AcrPull is granted before the first image pull;
// a system-assigned identity would only exist once the app, and its first pull, did. Key Vault
// is read with the app's system-assigned identity, not this one.
resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}-acrpull'
  location: location
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (useRegistry) {
  // A placeholder keeps the (unused) resource id well-formed when no registry is given.
  name: useRegistry ? containerRegistryName : 'none'
}

resource registryPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useRegistry) {
  name: guid(resourceGroup().id, containerRegistryName, pullIdentity.id, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: pullIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- App Service --------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: 'asp-${appName}'
  location: location
  kind: 'linux'
  sku: {
    name: appServicePlanSku
    capacity: instanceCount
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: appName
  location: location
  kind: 'app,linux,container'
  // System-assigned: reads Key Vault (the host's default when MANAGED_IDENTITY_CLIENT_ID is unset).
  // User-assigned: pulls the image.
  identity: {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${pullIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: {
      linuxFxVersion: 'DOCKER|${containerImage}'
      acrUseManagedIdentityCreds: useRegistry
      acrUserManagedIdentityID: useRegistry ? pullIdentity.properties.clientId : null
      // The scheduler refreshes tokens in the background: the app must not be unloaded when idle.
      alwaysOn: true
      // 200 (pass/warn) keeps an instance in rotation; 503 (fail: no valid token) takes it out,
      // and App Service replaces an instance that stays unhealthy for an hour.
      healthCheckPath: healthPath
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Platform: route to the container's port; no /home mount (tokens never touch disk).
        {
          name: 'WEBSITES_PORT'
          value: containerPort
        }
        {
          name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE'
          value: 'false'
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        // Host: secrets from Key Vault with the system-assigned identity.
        {
          name: 'KEYVAULT_URL'
          value: vault.properties.vaultUri
        }
        {
          name: 'KEYVAULT_SECRET_CLIENT_ID'
          value: keyVaultSecretClientId
        }
        {
          name: 'KEYVAULT_SECRET_CLIENT_SECRET'
          value: keyVaultSecretClientSecret
        }
        // Host: the store every instance shares (or each instance's memory), logged in to with
        // the system-assigned identity's Entra ID token; never a password in the URL.
        {
          name: 'CLEVER_AUTH_STORE'
          value: sharedStore ? 'rediss://${redis.properties.hostName}:${redisPort}' : 'memory'
        }
        {
          name: 'CLEVER_AUTH_STORE_AUTH'
          value: sharedStore ? 'entra' : 'none'
        }
        // The sidecar layout only (deploy/sidecar.bicep maps it onto clever-auth's
        // CLEVER_AUTH_LISTEN): there the main container owns the site's port, so clever-auth's
        // health listener takes this one. It serves the public health answer, which names no
        // district; the gateway stays on loopback whatever this says.
        {
          name: 'CLEVER_AUTH_SIDECAR_LISTEN'
          value: '0.0.0.0:${containerPort}'
        }
        // Component settings (never the two secrets: the host refuses to start with them here).
        {
          name: 'CLEVER_TOKEN_URL'
          value: cleverTokenUrl
        }
        {
          name: 'CLEVER_API_BASE_URL'
          value: cleverApiBaseUrl
        }
        {
          name: 'CLEVER_API_VERSION'
          value: cleverApiVersion
        }
        {
          name: 'CLEVER_GRANT'
          value: cleverGrant
        }
        {
          name: 'CLEVER_DISTRICTS'
          value: cleverDistricts
        }
        {
          name: 'CLEVER_TOKEN_LIFETIME_SECS'
          value: cleverTokenLifetimeSecs
        }
        {
          name: 'CLEVER_REFRESH_FRACTION'
          value: cleverRefreshFraction
        }
        {
          name: 'CLEVER_EXPIRY_SKEW_SECS'
          value: cleverExpirySkewSecs
        }
        {
          name: 'CLEVER_RETRY_MAX'
          value: cleverRetryMax
        }
        {
          name: 'CLEVER_RETRY_BASE_MS'
          value: cleverRetryBaseMs
        }
        {
          name: 'CLEVER_RETRY_MAX_DELAY_MS'
          value: cleverRetryMaxDelayMs
        }
        {
          name: 'CLEVER_RETRY_JITTER'
          value: cleverRetryJitter
        }
        {
          name: 'CLEVER_HTTP_TIMEOUT_MS'
          value: cleverHttpTimeoutMs
        }
        {
          name: 'CLEVER_RATE_LIMIT_MAX_WAIT_SECS'
          value: cleverRateLimitMaxWaitSecs
        }
        {
          name: 'CLEVER_VERSION_HEADER'
          value: cleverVersionHeader
        }
        {
          name: 'CLEVER_REFRESH_JITTER'
          value: cleverRefreshJitter
        }
        {
          name: 'CLEVER_PROBE_BATCH'
          value: cleverProbeBatch
        }
        {
          name: 'CLEVER_PROBE_PACE_MS'
          value: cleverProbePaceMs
        }
        {
          name: 'CLEVER_ALERT_AUTH_FAILING_SECS'
          value: cleverAlertAuthFailingSecs
        }
        {
          name: 'CLEVER_ALERT_RATE_LIMITED_SECS'
          value: cleverAlertRateLimitedSecs
        }
        {
          name: 'CLEVER_GATEWAY_DEADLINE_MS'
          value: cleverGatewayDeadlineMs
        }
      ]
    }
  }
  dependsOn: [
    registryPull
  ]
}

// No FTP or basic-auth deployment credentials: images come from the registry only.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Container stdout/stderr (the host's and the component's JSON lines), HTTP and platform logs.
resource siteLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'app-logs'
  scope: site
  properties: {
    workspaceId: workspace.id
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'AppServiceConsoleLogs'
        enabled: true
      }
      {
        category: 'AppServiceHTTPLogs'
        enabled: true
      }
      {
        category: 'AppServicePlatformLogs'
        enabled: true
      }
    ]
  }
}

// ---- the shared store (sharedStore) -----------------------------------------------------

resource redis 'Microsoft.Cache/redisEnterprise@2025-04-01' = if (sharedStore) {
  name: redisName
  location: location
  sku: {
    name: redisSku
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: 'Enabled'
  }
}

resource redisDatabase 'Microsoft.Cache/redisEnterprise/databases@2025-04-01' = if (sharedStore) {
  parent: redis
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: redisPort
    // One endpoint: the host's client is not cluster-aware.
    clusteringPolicy: 'EnterpriseCluster'
    // An evicted lease, schedule or budget counter would reset silently: refuse writes instead.
    evictionPolicy: 'NoEviction'
    // No token on disk (the spec), even sealed.
    persistence: {
      aofEnabled: false
      rdbEnabled: false
    }
    // Entra ID only: no access key to keep or leak.
    accessKeysAuthentication: 'Disabled'
  }
}

// The app's identity is a Redis user with the default policy (our commands on our keys).
resource redisAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-04-01' = if (sharedStore) {
  parent: redisDatabase
  name: 'cleverauthapp'
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: site.identity.principalId
    }
  }
}

// ---- access to the vault -------------------------------------------------------------------

// The app reads the two secrets, nothing more.
resource appReadsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, site.id, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Whoever loads and rotates the Clever credentials.
resource officerWritesSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(vault.id, secretsOfficerPrincipalId, keyVaultSecretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficerRoleId)
    principalId: secretsOfficerPrincipalId
    principalType: secretsOfficerPrincipalType
  }
}

// ---- alerts (log search over the workspace) --------------------------------------------------

var alertActions = {
  actionGroups: empty(alertActionGroupId) ? [] : [
    alertActionGroupId
  ]
}

var alertRules = [
  {
    name: 'clever-api-version'
    displayName: 'clever-auth: Clever API version mismatch or unsupported'
    description: 'The component logged api_version_problem: Clever serves another API version than clever_api_version, or says it is unsupported.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    threshold: 0
    query: '''
AppServiceConsoleLogs
| where ResultDescription contains '"event":"api_version_problem"'
'''
  }
  {
    name: 'clever-token-failures'
    displayName: 'clever-auth: Clever token acquisition keeps failing'
    description: 'The component gave up acquiring tokens (acquisition_failed) three times or more in an hour: look at health and the error codes.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT1H'
    threshold: 2
    query: '''
AppServiceConsoleLogs
| where ResultDescription contains '"event":"acquisition_failed"'
'''
  }
  {
    name: 'keyvault-refused'
    displayName: 'clever-auth: Key Vault refused secret reads'
    description: 'SecretGet on the vault answered 403 or 404: the identity lacks its role, or a secret is missing or disabled.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    threshold: 0
    query: '''
AZKVAuditLogs
| where OperationName == "SecretGet"
| where HttpStatusCode in (403, 404) // 401 is the normal first leg of every read (auth challenge)
'''
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = [for rule in (deployAlerts ? alertRules : []): {
  name: 'alert-${appName}-${rule.name}'
  location: location
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      workspace.id
    ]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    // The tables fill only once the app and vault have run; do not validate the query at deploy time.
    skipQueryValidation: true
    autoMitigate: true
    actions: alertActions
  }
  dependsOn: [
    siteLogs
    vaultAudit
  ]
}]

// ---- outputs --------------------------------------------------------------------------------

output webAppName string = site.name
output healthUrl string = 'https://${site.properties.defaultHostName}${healthPath}'
output keyVaultName string = vault.name
output keyVaultUri string = vault.properties.vaultUri
output webAppPrincipalId string = site.identity.principalId
output logAnalyticsWorkspaceId string = workspace.id
output applicationInsightsName string = appInsights.name
