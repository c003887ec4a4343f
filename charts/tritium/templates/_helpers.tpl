{{/*
Names and labels shared by every template. Kubernetes object names are capped at 63 characters
because several of them (Service, label values) must be valid DNS labels.
*/}}

{{- define "tritium.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tritium.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tritium.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of the release (a Deployment's selector is immutable). */}}
{{- define "tritium.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tritium.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tritium.labels" -}}
helm.sh/chart: {{ include "tritium.chart" . }}
{{ include "tritium.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tritium
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tritium.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tritium.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: the tag defaults to the chart's appVersion, so chart and image move together. */}}
{{- define "tritium.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the operator watches only the namespaces listed in watchNamespaces. */}}
{{- define "tritium.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
RBAC rules the operator needs inside every namespace it watches. In cluster-wide mode they go
into the ClusterRole; in namespaced mode into one Role per watched namespace. Exactly what the
code uses, no more: tests/unit/test_operator_rbac.py derives the calls from the operator's code
and fails on a rule missing here and on one granted here that nothing uses.
*/}}
{{- define "tritium.namespacedRules" -}}
# The InferenceService: kopf watches it (the operator reconciles from what the watch saw) and
# patches away the finalizer earlier versions put on it; status is written by patches only.
- apiGroups: ["serving.tritium.dev"]
  resources: ["inferenceservices"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["serving.tritium.dev"]
  resources: ["inferenceservices/status"]
  verbs: ["patch"]
# Children own a blockOwnerDeletion reference to it: the OwnerReferencesPermissionEnforcement
# admission plugin requires "update" on the owner's finalizers.
- apiGroups: ["serving.tritium.dev"]
  resources: ["inferenceservices/finalizers"]
  verbs: ["update"]
# Children rendered from each InferenceService: watched (kopf indexes), written with server-side
# apply (patch, and create when new), pruned (delete). Deployments are also read (the stable
# revision when the cache lacks it) and ConfigMaps too (those a spec refers to).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors", "prometheusrules", "alertmanagerconfigs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Pods are only listed: the builtin analysis provider scrapes the canary pods' own gateway metrics.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Secrets are only referenced (API keys, TLS, model store credentials): read, never written.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Events tell users what the operator did (core v1 Events, posted by the operator and by kopf).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Cluster-scoped reads kopf needs: it watches CRDs in both modes (its resource observer, and the
operator's handler for optional CRDs installed later), and namespaces only when it is not
cluster-wide (its namespace observer).
*/}}
{{- define "tritium.clusterReadRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if include "tritium.namespaced" . }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
Verbs on the kopf peering object. The chart ships no peering object (a custom object cannot be
applied in the same step as its CRD); `tritium operator --peering` creates it at start-up when it
is missing, which needs "create" (peering.create). kopf itself reads, watches and patches it.
*/}}
{{- define "tritium.peeringVerbs" -}}
{{- if .Values.peering.create -}}
["get", "list", "watch", "create", "patch"]
{{- else -}}
["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
