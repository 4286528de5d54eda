// Example parameters for deploy/main.bicep. Copy it per environment, fill in the values, and
// deploy with:
//   az deployment group create -g <group> --parameters deploy/<env>.bicepparam
// (the `using` line names the template). Never put the Clever client id or secret here: they
// go into the Key Vault with `az keyvault secret set` (README.md, "Deploy to Azure").
using './main.bicep'

// The image built from the repository's Dockerfile, e.g. by `az acr build`.
param containerImage = 'myregistry.azurecr.io/clever-auth:1.0.0'

// The Azure Container Registry (same resource group) that holds it; '' for a public image.
param containerRegistryName = 'myregistry'

// Who loads the Clever secrets into the vault: `az ad signed-in-user show --query id -o tsv`.
param secretsOfficerPrincipalId = ''

param appServicePlanSku = 'B1'
param instanceCount = 1
// Two or more instances as one Clever client (Azure Managed Redis; README "Several instances").
param sharedStore = false

// Alerts notify this action group ('' = visible in Azure Monitor only).
param alertActionGroupId = ''

// Component settings: leave out what should keep the code's default (README.md,
// "Component settings"). For example:
param cleverApiVersion = 'v3.0'
param cleverDistricts = ''
