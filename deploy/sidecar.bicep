// The App Service sidecar layout: your sync service is the main container, clever-auth runs
// next to it as a sidecar, and the two share localhost. The sync service calls Clever through
// the gateway at http://127.0.0.1:8081/clever/{district}/{version}/{path} and never holds a
// token (README.md, "Calling Clever from your sync code").
//
// Deploy deploy/main.bicep first (Key Vault, identities, telemetry, the clever-auth app
// settings), then turn its Web App into the sidecar layout:
//
//   az webapp config set -g <group> -n <app> --linux-fx-version SITECONTAINERS
//   az deployment group create -g <group> --template-file deploy/sidecar.bicep \
//     --parameters appName=<webAppName output of main.bicep> \
//                  syncImage=<registry>.azurecr.io/<your-sync-service>:<tag> syncPort=8000 \
//                  cleverAuthImage=<registry>.azurecr.io/clever-auth:<tag> \
//                  pullIdentityClientId=<client id of main.bicep's pull identity, or empty>
//
// The single-container layout (main.bicep alone: clever-auth is the app and App Service
// routes to its health endpoint) stays the default.

targetScope = 'resourceGroup'

@description('The Web App made by main.bicep (its webAppName output).')
param appName string

@description('Your sync service image: the main container, the one App Service routes traffic to.')
param syncImage string

@description('The port your sync service listens on (not 8080 or 8081: clever-auth uses them on the shared localhost).')
param syncPort string = '8000'

@description('The clever-auth image, as for main.bicep.')
param cleverAuthImage string

@description('Client id of the user-assigned identity that pulls from the registry (main.bicep makes one when containerRegistryName is set); empty for public images.')
param pullIdentityClientId string = ''

resource site 'Microsoft.Web/sites@2023-12-01' existing = {
  name: appName
}

var pull = empty(pullIdentityClientId)
  ? { authType: 'Anonymous' }
  : { authType: 'UserAssigned', userManagedIdentityClientId: pullIdentityClientId }

// The main container: App Service sends the site's traffic to syncPort.
resource syncContainer 'Microsoft.Web/sites/sitecontainers@2024-04-01' = {
  parent: site
  name: 'sync'
  properties: union(pull, {
    image: syncImage
    isMain: true
    targetPort: syncPort
  })
}

// clever-auth as a sidecar. Its environment comes from the app settings main.bicep set
// (KEYVAULT_URL, CLEVER_*, APPLICATIONINSIGHTS_CONNECTION_STRING): each entry maps a
// variable to the app setting of the same name. The health listener moves to main.bicep's
// CLEVER_AUTH_SIDECAR_LISTEN (0.0.0.0:8080: the main container owns the site's port, syncPort);
// the gateway keeps its loopback default, 127.0.0.1:8081, so only containers of this site
// reach it. tests/tests/sidecar_pod_e2e.rs rehearses this layout in a podman pod.
resource cleverAuthContainer 'Microsoft.Web/sites/sitecontainers@2024-04-01' = {
  parent: site
  name: 'clever-auth'
  properties: union(pull, {
    image: cleverAuthImage
    isMain: false
    targetPort: '8081'
    environmentVariables: [
      { name: 'KEYVAULT_URL', value: 'KEYVAULT_URL' }
      { name: 'KEYVAULT_SECRET_CLIENT_ID', value: 'KEYVAULT_SECRET_CLIENT_ID' }
      { name: 'KEYVAULT_SECRET_CLIENT_SECRET', value: 'KEYVAULT_SECRET_CLIENT_SECRET' }
      { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: 'APPLICATIONINSIGHTS_CONNECTION_STRING' }
      { name: 'CLEVER_API_BASE_URL', value: 'CLEVER_API_BASE_URL' }
      { name: 'CLEVER_API_VERSION', value: 'CLEVER_API_VERSION' }
      { name: 'CLEVER_TOKEN_URL', value: 'CLEVER_TOKEN_URL' }
      { name: 'CLEVER_GRANT', value: 'CLEVER_GRANT' }
      { name: 'CLEVER_DISTRICTS', value: 'CLEVER_DISTRICTS' }
      { name: 'CLEVER_GATEWAY_DEADLINE_MS', value: 'CLEVER_GATEWAY_DEADLINE_MS' }
      { name: 'CLEVER_AUTH_LISTEN', value: 'CLEVER_AUTH_SIDECAR_LISTEN' }
    ]
  })
}

output gatewayUrl string = 'http://127.0.0.1:8081/clever/'
