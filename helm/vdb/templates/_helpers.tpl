{{/*
Names and labels shared by every template. Each service of VDB gets a component name
("shard" today) and its own <fullname>-<component> objects.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "vdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name: fullnameOverride, else "<release>-<chart>", else the release name
alone when it already contains the chart's name. Truncated so that derived names
("-shard-headless") stay within Kubernetes' limits.
*/}}
{{- define "vdb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "vdb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "vdb.labels" -}}
helm.sh/chart: {{ include "vdb.chart" . }}
app.kubernetes.io/name: {{ include "vdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vdb
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Shard node objects. */}}
{{- define "vdb.shard.fullname" -}}
{{- printf "%s-shard" (include "vdb.fullname" .) }}
{{- end }}

{{- define "vdb.shard.headlessName" -}}
{{- printf "%s-shard-headless" (include "vdb.fullname" .) }}
{{- end }}

{{- define "vdb.shard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: shard
{{- end }}

{{- define "vdb.shard.labels" -}}
{{ include "vdb.labels" . }}
app.kubernetes.io/component: shard
{{- end }}

{{- define "vdb.shard.image" -}}
{{- $image := .Values.shard.image }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag | toString) }}
{{- end }}

{{/*
Seconds between SIGTERM and SIGKILL: at least the shard's own shutdown grace, so that the
drain of in-flight requests and the final WAL fsync are never cut short.
*/}}
{{- define "vdb.shard.terminationGracePeriodSeconds" -}}
{{- $grace := int64 .Values.shard.settings.shutdownGraceSeconds }}
{{- $set := .Values.shard.terminationGracePeriodSeconds }}
{{- if or (kindIs "invalid" $set) (eq (toString $set) "") }}
{{- add $grace 30 }}
{{- else if lt (int64 $set) $grace }}
{{- fail (printf "shard.terminationGracePeriodSeconds (%d) must be at least shard.settings.shutdownGraceSeconds (%d)" (int64 $set) $grace) }}
{{- else }}
{{- int64 $set }}
{{- end }}
{{- end }}
