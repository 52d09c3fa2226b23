{{/*
Names, labels and the values every component shares. Component templates call the
per-component helpers with (dict "ctx" $ "component" "<operator|facade|receiver>").
*/}}

{{- define "whatsapp-channels.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or just the release name when it already holds the chart name. */}}
{{- define "whatsapp-channels.fullname" -}}
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

{{- define "whatsapp-channels.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<fullname>-<component>" */}}
{{- define "whatsapp-channels.componentName" -}}
{{- printf "%s-%s" (include "whatsapp-channels.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{/* Selectors never change on upgrade: name, instance and component only. */}}
{{- define "whatsapp-channels.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whatsapp-channels.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "whatsapp-channels.labels" -}}
helm.sh/chart: {{ include "whatsapp-channels.chart" .ctx }}
{{ include "whatsapp-channels.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: whatsapp-channels
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "whatsapp-channels.serviceAccountName" -}}
{{- $sa := (index .ctx.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "whatsapp-channels.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{- define "whatsapp-channels.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
Where the channels and their Secrets are, and nothing else: the receiver may read every Secret
there. Never the release namespace, which keeps the sealing keys, the API keys and the forward
secret out of the receiver's reach.
*/}}
{{- define "whatsapp-channels.channelNamespace" -}}
{{- $name := .Values.channelNamespace.name | default (printf "%s-channels" .Release.Namespace) }}
{{- if eq $name .Release.Namespace }}
{{- fail (printf "channelNamespace.name must not be the release namespace (%s): the receiver may read every Secret where the channels are, and the release namespace holds the sealing keys, the API keys and the forward secret" $name) }}
{{- end }}
{{- if gt (len $name) 63 }}
{{- fail (printf "the channel namespace %s is longer than 63 characters: set channelNamespace.name" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* Where the operator keeps its sealing keys and publishes their public half. */}}
{{- define "whatsapp-channels.keysNamespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{- define "whatsapp-channels.webhookBaseUrl" -}}
{{- required "webhookBaseUrl is required: the receiver's public base URL as Meta reaches it, e.g. --set webhookBaseUrl=https://hooks.example.com" .Values.webhookBaseUrl | trimSuffix "/" }}
{{- end }}

{{/* Names the contract module fixes (whatsapp_channel.model); a test checks they agree. */}}
{{- define "whatsapp-channels.sealingPublicConfigMap" -}}whatsapp-channels-sealing-public{{- end }}
{{- define "whatsapp-channels.sealingKeysSecret" -}}whatsapp-channels-sealing-keys{{- end }}
{{/* The Lease the operator's replicas elect their leader on (in the release namespace). */}}
{{- define "whatsapp-channels.operatorLease" -}}
{{- include "whatsapp-channels.componentName" (dict "ctx" . "component" "operator") }}
{{- end }}
{{- define "whatsapp-channels.channelsGroup" -}}whatsapp.hydracore.io{{- end }}

{{/* Where the mounted Secrets appear in the containers. */}}
{{- define "whatsapp-channels.apiKeysDir" -}}/etc/whatsapp-channels/api-keys{{- end }}
{{- define "whatsapp-channels.forwardSecretDir" -}}/etc/whatsapp-channels/forward-secret{{- end }}

{{- define "whatsapp-channels.apiKeysSecretName" -}}
{{- if .Values.facade.apiKeys.existingSecret }}
{{- .Values.facade.apiKeys.existingSecret }}
{{- else }}
{{- include "whatsapp-channels.componentName" (dict "ctx" . "component" "api-keys") }}
{{- end }}
{{- end }}

{{- define "whatsapp-channels.apiKeysSecretKey" -}}
{{- if .Values.facade.apiKeys.existingSecret }}{{ .Values.facade.apiKeys.existingSecretKey }}{{ else }}api-keys{{ end }}
{{- end }}

{{- define "whatsapp-channels.forwardSecretName" -}}
{{- if .Values.receiver.forwardSecret.existingSecret }}
{{- .Values.receiver.forwardSecret.existingSecret }}
{{- else }}
{{- include "whatsapp-channels.componentName" (dict "ctx" . "component" "forward-secret") }}
{{- end }}
{{- end }}

{{- define "whatsapp-channels.forwardSecretKey" -}}
{{- if .Values.receiver.forwardSecret.existingSecret }}{{ .Values.receiver.forwardSecret.existingSecretKey }}{{ else }}forward-secret{{ end }}
{{- end }}

{{/* Marks a Secret whose content the chart generated, so an upgrade keeps it. */}}
{{- define "whatsapp-channels.generatedAnnotation" -}}whatsapp.hydracore.io/generated-by-chart{{- end }}

{{/*
A value the chart generated before and keeps: the Secret's current `key` when that Secret
carries the generated marker, else a fresh random one. (`helm template` cannot look up,
so it always shows a fresh one.)
*/}}
{{- define "whatsapp-channels.keptOrRandom" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- $annotations := dig "metadata" "annotations" dict ($existing | default dict) }}
{{- $kept := dig "data" .key "" ($existing | default dict) }}
{{- if and $kept (hasKey $annotations (include "whatsapp-channels.generatedAnnotation" .ctx)) }}
{{- $kept | b64dec }}
{{- else }}
{{- .fresh }}
{{- end }}
{{- end }}

{{/* The pod and container settings every component shares. */}}
{{- define "whatsapp-channels.podCommon" -}}
{{- $values := index .ctx.Values .component -}}
serviceAccountName: {{ include "whatsapp-channels.serviceAccountName" . }}
automountServiceAccountToken: true
enableServiceLinks: false
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .ctx.Values.topologySpread.enabled }}
{{- $selector := include "whatsapp-channels.selectorLabels" . }}
topologySpreadConstraints:
  {{- range .ctx.Values.topologySpread.topologyKeys }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- $selector | nindent 8 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The component's metrics port; never the port its API or liveness endpoint serves on. */}}
{{- define "whatsapp-channels.metricsPort" -}}
{{- $values := index .ctx.Values .component }}
{{- $served := ternary $values.livenessPort $values.port (eq .component "operator") }}
{{- if eq (int $values.metrics.port) (int $served) }}
{{- fail (printf "%s.metrics.port must differ from the port it serves on (%v)" .component $served) }}
{{- end }}
{{- $values.metrics.port }}
{{- end }}

{{/* Pod labels and annotations; `annotations` (optional) adds to the values' podAnnotations. */}}
{{- define "whatsapp-channels.podMetadata" -}}
{{- $values := index .ctx.Values .component }}
{{- $annotations := merge (dict) (.annotations | default dict) $values.podAnnotations -}}
{{- if and .ctx.Values.metrics.enabled .ctx.Values.metrics.scrapeAnnotations }}
{{- $scrape := dict "prometheus.io/scrape" "true" "prometheus.io/port" (toString $values.metrics.port) "prometheus.io/path" "/metrics" }}
{{- $annotations = merge $annotations $scrape }}
{{- end }}
labels:
  {{- include "whatsapp-channels.labels" . | nindent 2 }}
  {{- with $values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The key that signs forwarded events: the value given, else the one generated before, else a fresh one. */}}
{{- define "whatsapp-channels.forwardSecretValue" -}}
{{- if .Values.receiver.forwardSecret.value }}
{{- .Values.receiver.forwardSecret.value }}
{{- else }}
{{- include "whatsapp-channels.keptOrRandom" (dict "ctx" . "name" (include "whatsapp-channels.forwardSecretName" .) "key" "forward-secret" "fresh" (randAlphaNum 48)) }}
{{- end }}
{{- end }}

{{/* Admission policies are cluster-wide objects: named after the release and its namespace. */}}
{{- define "whatsapp-channels.admissionPolicyName" -}}
{{- printf "%s-%s-%s" (include "whatsapp-channels.fullname" .ctx) .ctx.Release.Namespace .policy }}
{{- end }}

{{/* The port of receiver.forwardUrlTemplate: the explicit one, else the scheme's. */}}
{{- define "whatsapp-channels.forwardPort" -}}
{{- include "whatsapp-channels.urlPort" (required "receiver.forwardUrlTemplate is required" .Values.receiver.forwardUrlTemplate) }}
{{- end }}

{{/* The port of a URL: the explicit one, else the scheme's. */}}
{{- define "whatsapp-channels.urlPort" -}}
{{- $authority := regexReplaceAll "^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*).*$" . "${1}" }}
{{- $authority = regexReplaceAll "^.*@" $authority "" }}
{{- $port := regexFind ":[0-9]+$" $authority | trimPrefix ":" }}
{{- if $port }}{{ $port }}{{ else if hasPrefix "https:" (lower .) }}443{{ else }}80{{ end }}
{{- end }}

{{/*
The egress rule to the Kubernetes API server, as YAML: networkPolicy.apiServer.to on its
ports when given; else the addresses and ports of the `kubernetes` Service's EndpointSlice,
read from the cluster at install (helm `lookup`); else (helm template, no cluster) any address on
networkPolicy.apiServer.ports.
*/}}
{{- define "whatsapp-channels.apiServerEgress" -}}
{{- $np := .Values.networkPolicy }}
{{- $to := $np.apiServer.to }}
{{- $ports := $np.apiServer.ports }}
{{- if not $to }}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" }}
{{- $found := list }}
{{- $foundPorts := list }}
{{- range $endpoint := (dig "endpoints" list $slice) }}
{{- range $address := (dig "addresses" list $endpoint) }}
{{- $bits := ternary "128" "32" (contains ":" $address) }}
{{- $found = append $found (dict "ipBlock" (dict "cidr" (printf "%s/%s" $address $bits))) }}
{{- end }}
{{- end }}
{{- range $port := (dig "ports" list $slice) }}
{{- $foundPorts = append $foundPorts (int $port.port) }}
{{- end }}
{{- if and $found $foundPorts }}
{{- $to = $found }}
{{- $ports = $foundPorts | uniq }}
{{- end }}
{{- end }}
ports:
  {{- range $ports }}
  - port: {{ . }}
    protocol: TCP
  {{- end }}
{{- with $to }}
to:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The bounded-request-head settings of the facade or the receiver: (dict "prefix"
"WA_RECEIVER_" "http" $values.http). */}}
{{- define "whatsapp-channels.headLimitsEnv" -}}
- name: {{ .prefix }}MAX_HEAD_BYTES
  value: {{ .http.maxHeadBytes | int64 | quote }}
- name: {{ .prefix }}HEAD_TIMEOUT_SECONDS
  value: {{ .http.headTimeoutSeconds | quote }}
- name: {{ .prefix }}MAX_CONNECTIONS
  value: {{ .http.maxConnections | int64 | quote }}
{{- with .http.trustedProxies }}
- name: {{ $.prefix }}TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}

{{/*
"true" when the metrics Services are rendered: asked for (metrics.services), or needed by the
ServiceMonitors; empty otherwise. ServiceMonitors without metrics are refused.
*/}}
{{- define "whatsapp-channels.metricsServices" -}}
{{- $monitored := .Values.monitoring.serviceMonitor.enabled }}
{{- if and $monitored (not .Values.metrics.enabled) }}
{{- fail "monitoring.serviceMonitor.enabled needs metrics.enabled: there is nothing to scrape" }}
{{- end }}
{{- if and .Values.metrics.enabled (or .Values.metrics.services $monitored) }}true{{ end }}
{{- end }}

{{/* Marks the metrics Services apart from the public ones, which share their selector labels. */}}
{{- define "whatsapp-channels.metricsServiceLabel" -}}
whatsapp.hydracore.io/metrics: "true"
{{- end }}

{{/* The `job` label Prometheus gives a component's samples through its ServiceMonitor (the
metrics Service's name), and the release's namespace: what the alert rules select on. */}}
{{- define "whatsapp-channels.scrapeSelector" -}}
{{- printf "job=%q, namespace=%q" (printf "%s-metrics" (include "whatsapp-channels.componentName" .)) .ctx.Release.Namespace }}
{{- end }}

{{/*
PromQL: the operator counted reconciles matching .selector within .window. increase() misses
the first count of a series (it appears at 1, nothing before it): a channel Meta refused is
not reconciled again, so its reason is often counted once. A series new within the window
counts too.
*/}}
{{- define "whatsapp-channels.reconciledWithin" -}}
{{- $series := printf "whatsapp_operator_reconciles_total{%s}" .selector -}}
sum(increase({{ $series }}[{{ .window }}])) > 0
or
count({{ $series }} unless {{ $series }} offset {{ .window }}) > 0
{{- end }}
