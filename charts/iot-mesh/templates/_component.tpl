{{/*
The objects of one entry of .Values.components. Argument: a context dict
with root (the chart's top-level context), name (the component's key),
config (its values) and defaults (.Values.default). Every field read from
config is declared in values.schema.json's "component" definition.
*/}}

{{- define "iot-mesh.workload" }}
{{- $config := .config }}
{{- $fullname := include "iot-mesh.fullname" .root }}
{{- $kind := $config.kind | default "Deployment" }}
{{- $persistence := $config.persistence | default dict }}
{{- $claim := and (eq $kind "StatefulSet") $persistence.enabled }}
---
apiVersion: apps/v1
kind: {{ $kind }}
metadata:
  name: {{ $fullname }}-{{ .name }}
  labels:
    {{- include "iot-mesh.labels" . | nindent 4 }}
spec:
  replicas: {{ $config.replicas | default 1 }}
  {{- if eq $kind "StatefulSet" }}
  serviceName: {{ $fullname }}-{{ .name }}-headless
  podManagementPolicy: Parallel
  {{- end }}
  selector:
    matchLabels:
      {{- include "iot-mesh.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "iot-mesh.selectorLabels" . | nindent 8 }}
      {{- if or $config.podAnnotations $config.configuration }}
      annotations:
        {{- with $config.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $config.configuration }}
        checksum/config: {{ tpl (toYaml .files) $.root | sha256sum }}
        {{- end }}
      {{- end }}
    spec:
      {{- with (($config.imageOverride).pullSecrets | default .defaults.image.pullSecrets) }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $config.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- $scheduling := $config.schedulingRules | default .defaults.schedulingRules | default dict }}
      {{- with $scheduling.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $scheduling.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $scheduling.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "iot-mesh.image" . | quote }}
          imagePullPolicy: {{ ($config.imageOverride).pullPolicy | default .defaults.image.pullPolicy }}
          {{- with $config.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $config.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $config.ports }}
          ports:
            {{- range . }}
            - name: {{ .name }}
              containerPort: {{ .value }}
            {{- end }}
          {{- end }}
          {{- $env := include "iot-mesh.env" . }}
          {{- if $env }}
          env:
            {{- $env | nindent 12 }}
          {{- end }}
          {{- with $config.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $config.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with ($config.resources | default .defaults.resources) }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with ($config.securityContext | default .defaults.securityContext) }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if or $config.configuration $persistence.mountPath $config.secretMounts }}
          volumeMounts:
            {{- with $config.configuration }}
            - name: config
              mountPath: {{ .mountPath }}
              readOnly: true
            {{- end }}
            {{- with $persistence.mountPath }}
            - name: data
              mountPath: {{ . }}
            {{- end }}
            {{- range $config.secretMounts }}
            - name: {{ .name }}
              mountPath: {{ .mountPath }}
              readOnly: true
            {{- end }}
          {{- end }}
      {{- if or $config.configuration (and $persistence.mountPath (not $claim)) $config.secretMounts }}
      volumes:
        {{- if $config.configuration }}
        - name: config
          configMap:
            name: {{ $fullname }}-{{ .name }}-config
        {{- end }}
        {{- if and $persistence.mountPath (not $claim) }}
        # Not a StatefulSet with persistence: data lives as long as the pod.
        - name: data
          emptyDir: {}
        {{- end }}
        {{- range $config.secretMounts }}
        - name: {{ .name }}
          secret:
            secretName: {{ tpl .secretName $.root }}
            defaultMode: 0400
        {{- end }}
      {{- end }}
  {{- if $claim }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        {{- with $persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $persistence.size }}
  {{- end }}
{{- end }}

{{- define "iot-mesh.disruptionBudget" }}
{{- $config := .config }}
{{- if gt (int ($config.replicas | default 1)) 1 }}
---
# At most one pod of a replicated component away at a time (drains, upgrades):
# a NATS cluster of three keeps its JetStream quorum, a service keeps serving.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "iot-mesh.fullname" .root }}-{{ .name }}
  labels:
    {{- include "iot-mesh.labels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "iot-mesh.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{- define "iot-mesh.service" }}
{{- $config := .config }}
{{- if $config.ports }}
{{- $fullname := include "iot-mesh.fullname" .root }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-{{ .name }}
  labels:
    {{- include "iot-mesh.labels" . | nindent 4 }}
  {{- with ($config.service).annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ ($config.service).type | default "ClusterIP" }}
  selector:
    {{- include "iot-mesh.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $config.ports }}
    - name: {{ .name }}
      port: {{ .value }}
      targetPort: {{ .name }}
    {{- end }}
{{- if eq ($config.kind | default "Deployment") "StatefulSet" }}
---
# Stable per-pod names (<pod>.<fullname>-<component>-headless) for clustering.
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-{{ .name }}-headless
  labels:
    {{- include "iot-mesh.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "iot-mesh.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $config.ports }}
    - name: {{ .name }}
      port: {{ .value }}
      targetPort: {{ .name }}
    {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "iot-mesh.configmap" }}
{{- with .config.configuration }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "iot-mesh.fullname" $.root }}-{{ $.name }}-config
  labels:
    {{- include "iot-mesh.labels" $ | nindent 4 }}
data:
  {{- range $file, $content := .files }}
  {{ $file }}: |
    {{- tpl $content $.root | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
