{{/* Names and labels. */}}
{{- define "schedule-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "schedule-reconciler.fullname" -}}
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

{{- define "schedule-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "schedule-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "schedule-reconciler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "schedule-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "schedule-reconciler.serviceAccountName" -}}
{{- if .Values.sidecar.enabled }}
{{- .Values.sidecar.serviceAccountName }}
{{- else if .Values.serviceAccount.create }}
{{- default (include "schedule-reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "schedule-reconciler.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "schedule-reconciler.replicas" -}}
{{- if .Values.leaderElection.enabled }}{{ .Values.leaderElection.replicas }}{{ else }}1{{ end }}
{{- end }}

{{/*
The daemon's config: .Values.config with the keys the chart owns. Fails on inline
secrets and on an HA setup whose state would be split between replicas.
*/}}
{{- define "schedule-reconciler.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $leader := dict "enabled" .Values.leaderElection.enabled "backend" .Values.leaderElection.backend "lease_name" (include "schedule-reconciler.fullname" .) "namespace" .Release.Namespace "lease_duration" .Values.leaderElection.leaseDuration }}
{{- $metrics := dict "host" "0.0.0.0" "port" (int .Values.metrics.port) "detail_series_limit" (int .Values.metrics.detailSeriesLimit) }}
{{- $_ := set $config "leader_election" $leader }}
{{- $_ := set $config "metrics" $metrics }}
{{- $text := toYaml $config }}
{{- if regexMatch "(?mi)^\\s*(- )?(password|token|api_key|apikey|secret|cookie|cookies|private_key):" $text }}
{{- fail "config: a secret is inlined in .Values.config; use the *_env or *_file keys with secretEnv / secretFiles" }}
{{- end }}
{{- if and .Values.leaderElection.enabled (hasPrefix "sqlite" (dig "state" "url" "sqlite" $config)) }}
{{- fail "leaderElection.enabled needs a shared state store: set config.state.url to PostgreSQL (password via secretEnv PGPASSWORD)" }}
{{- end }}
{{- $text }}
{{- end }}

{{/* Seconds in a duration like 30s, 5m, 1h or 90 (one unit). */}}
{{- define "schedule-reconciler.seconds" -}}
{{- $text := toString . | trim }}
{{- if regexMatch "^[0-9]+$" $text }}{{ $text }}
{{- else if regexMatch "^[0-9]+s$" $text }}{{ trimSuffix "s" $text }}
{{- else if regexMatch "^[0-9]+m$" $text }}{{ mul (trimSuffix "m" $text | atoi) 60 }}
{{- else if regexMatch "^[0-9]+h$" $text }}{{ mul (trimSuffix "h" $text | atoi) 3600 }}
{{- else }}{{ fail (printf "config.interval: %q: the chart understands one unit (90, 30s, 5m, 1h)" $text) }}
{{- end }}
{{- end }}

{{/* Kubernetes targets the daemon reaches with its own in-cluster identity. */}}
{{- define "schedule-reconciler.inClusterTargets" -}}
{{- $targets := list }}
{{- range (.Values.config.targets | default list) }}
{{- if and (eq .type "kubernetes") (not .kubeconfig) (not .host) }}
{{- $targets = append $targets . }}
{{- end }}
{{- end }}
{{- toYaml (dict "targets" $targets) }}
{{- end }}

{{- define "schedule-reconciler.needsApiToken" -}}
{{- $inCluster := (include "schedule-reconciler.inClusterTargets" . | fromYaml).targets }}
{{- if or $inCluster (and .Values.leaderElection.enabled (eq .Values.leaderElection.backend "kubernetes")) }}true{{ end }}
{{- end }}

{{/* Env shared by the Deployment and the sidecar. */}}
{{- define "schedule-reconciler.env" -}}
- name: SCHEDULE_RECONCILER_CONFIG
  value: /etc/schedule-reconciler/config.yaml
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volume mounts shared by the Deployment and the sidecar; `prefix` names the volumes. */}}
{{- define "schedule-reconciler.volumeMounts" -}}
{{- $prefix := .prefix -}}
- name: {{ $prefix }}config
  mountPath: /etc/schedule-reconciler
  readOnly: true
- name: {{ $prefix }}state
  mountPath: /var/lib/schedule-reconciler
- name: {{ $prefix }}tmp
  mountPath: /tmp
{{- range .root.Values.secretFiles }}
- name: {{ $prefix }}secret-{{ .name }}
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}
{{- if .root.Values.kubeflowToken.enabled }}
- name: {{ $prefix }}kubeflow-token
  mountPath: {{ .root.Values.kubeflowToken.path }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Volumes shared by the Deployment and the sidecar (the whole config directory, not a
subPath, so that ConfigMap updates reach the running daemon). */}}
{{- define "schedule-reconciler.volumes" -}}
{{- $prefix := .prefix }}
{{- $root := .root -}}
- name: {{ $prefix }}config
  configMap:
    name: {{ include "schedule-reconciler.fullname" $root }}
- name: {{ $prefix }}state
{{- if and $root.Values.state.persistence.enabled (not $root.Values.sidecar.enabled) }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-state" (include "schedule-reconciler.fullname" $root)) $root.Values.state.persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: {{ $prefix }}tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- range $root.Values.secretFiles }}
- name: {{ $prefix }}secret-{{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
{{- end }}
{{- if $root.Values.kubeflowToken.enabled }}
- name: {{ $prefix }}kubeflow-token
  projected:
    defaultMode: 0440
    sources:
      - serviceAccountToken:
          audience: {{ $root.Values.kubeflowToken.audience }}
          expirationSeconds: {{ $root.Values.kubeflowToken.expirationSeconds }}
          path: token
{{- end }}
{{- end }}

{{/*
The daemon as a container of another pod (the ZenML server's): reads ZENML_STORE_URL
from the same Secret the ZenML server uses. No readiness probe: a sidecar that is not
ready would take the ZenML server out of its Service.
Usage: {{ include "schedule-reconciler.sidecarContainer" . }} in a pod's containers.
*/}}
{{- define "schedule-reconciler.sidecarContainer" -}}
- name: schedule-reconciler
  image: {{ include "schedule-reconciler.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run", "--config", "/etc/schedule-reconciler/config.yaml"]
  env:
    - name: ZENML_STORE_URL
      valueFrom:
        secretKeyRef:
          name: {{ .Values.sidecar.storeSecret.name }}
          key: {{ .Values.sidecar.storeSecret.urlKey }}
    {{- if .Values.sidecar.storeSecret.passwordKey }}
    - name: ZENML_STORE_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .Values.sidecar.storeSecret.name }}
          key: {{ .Values.sidecar.storeSecret.passwordKey }}
    {{- end }}
    {{- include "schedule-reconciler.env" . | nindent 4 }}
  ports:
    - name: reconciler
      containerPort: {{ .Values.metrics.port }}
      protocol: TCP
  livenessProbe:
    {{- toYaml (mergeOverwrite (deepCopy .Values.livenessProbe) (dict "httpGet" (dict "path" "/healthz" "port" "reconciler"))) | nindent 4 }}
  startupProbe:
    {{- toYaml (mergeOverwrite (deepCopy .Values.startupProbe) (dict "httpGet" (dict "path" "/healthz" "port" "reconciler"))) | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  volumeMounts:
    {{- include "schedule-reconciler.volumeMounts" (dict "root" . "prefix" "schedule-reconciler-") | nindent 4 }}
{{- end }}

{{/* The volumes the sidecar container needs, for the same pod's `volumes`. */}}
{{- define "schedule-reconciler.sidecarVolumes" -}}
{{- include "schedule-reconciler.volumes" (dict "root" . "prefix" "schedule-reconciler-") }}
{{- end }}
