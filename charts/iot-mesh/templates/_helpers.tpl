{{/* The chart's name. */}}
{{- define "iot-mesh.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: <release>-<chart>, or the release name alone
when it already contains the chart's name. At most 40 characters, so that
"<fullname>-<component>-headless" stays within Kubernetes' 63.
*/}}
{{- define "iot-mesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "iot-mesh.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "iot-mesh.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Name of the Secret with the platform's secrets. */}}
{{- define "iot-mesh.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "iot-mesh.fullname" .)) }}
{{- end }}

{{/* The Secret with the NATS operator setup (files of `npm run setup:nats`'s kubernetes/ folder). */}}
{{- define "iot-mesh.natsAuthSecretName" -}}
{{- .Values.natsAuth.secretName | default (printf "%s-nats-auth" (include "iot-mesh.fullname" .)) }}
{{- end }}

{{/* Replicas of the platform's JetStream streams: 3 on a NATS cluster (nats replicas > 1), else 1. */}}
{{- define "iot-mesh.streamReplicas" -}}
{{- if gt (int .Values.components.nats.replicas) 1 }}3{{ else }}1{{ end }}
{{- end }}

{{/* Labels of a component's objects; argument: the component context (root, name, config, defaults). */}}
{{- define "iot-mesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "iot-mesh.name" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "iot-mesh.selectorLabels" . }}
{{- end }}

{{/* Selector labels of a component; argument: the component context. */}}
{{- define "iot-mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iot-mesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* repository:tag of a component: its imageOverride, else default.image, tag defaulting to appVersion. */}}
{{- define "iot-mesh.image" -}}
{{- $override := .config.imageOverride | default dict }}
{{- $repository := $override.repository | default .defaults.image.repository }}
{{- $tag := $override.tag | default .defaults.image.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" $repository (toString $tag) }}
{{- end }}

{{/*
A component's environment: default.env (when useDefault.env, minus names the
component sets itself), then the component's env, then OTEL_SERVICE_NAME for
the platform's processes; rendered with tpl so values can name Services.
*/}}
{{- define "iot-mesh.env" -}}
{{- $config := .config }}
{{- $env := list }}
{{- if ($config.useDefault).env }}
{{- $own := list }}
{{- range ($config.env | default list) }}
{{- $own = append $own .name }}
{{- end }}
{{- range .defaults.env }}
{{- if not (has .name $own) }}
{{- $env = append $env . }}
{{- end }}
{{- end }}
{{- end }}
{{- $env = concat $env ($config.env | default list) }}
{{- if ($config.useDefault).env }}
{{- $env = append $env (dict "name" "OTEL_SERVICE_NAME" "value" .name) }}
{{- end }}
{{- if $env }}
{{- tpl (toYaml $env) .root }}
{{- end }}
{{- end }}
