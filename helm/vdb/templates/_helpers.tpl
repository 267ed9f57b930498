{{/*
Names and labels shared by every template. Each service of VDB gets a component name
("shard", "router", "etcd") and its own <fullname>-<component> objects.
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

{{/* Router objects. */}}
{{- define "vdb.router.fullname" -}}
{{- printf "%s-router" (include "vdb.fullname" .) }}
{{- end }}

{{- define "vdb.router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: router
{{- end }}

{{- define "vdb.router.labels" -}}
{{ include "vdb.labels" . }}
app.kubernetes.io/component: router
{{- end }}

{{- define "vdb.router.image" -}}
{{- $image := .Values.router.image }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag | toString) }}
{{- end }}

{{/*
The shard nodes the routers register, "id=url,...": every pod of the shard StatefulSet by
its stable name, with the pod name as the node id (the shard's VDB_NODE_ID).
*/}}
{{- define "vdb.router.nodes" -}}
{{- $nodes := list }}
{{- range $i, $_ := until (int .Values.shard.replicas) }}
{{- $pod := printf "%s-%d" (include "vdb.shard.fullname" $) $i }}
{{- $nodes = append $nodes (printf "%s=http://%s.%s.%s.svc:%d" $pod $pod (include "vdb.shard.headlessName" $) $.Release.Namespace (int $.Values.shard.port)) }}
{{- end }}
{{- join "," $nodes }}
{{- end }}

{{/*
The routers' metastore: router.metastore, else the chart's etcd members. Fails to render
without one, or with anything but etcd:// (routers cannot share a local file).
*/}}
{{- define "vdb.router.metastore" -}}
{{- if .Values.router.metastore }}
{{- if not (hasPrefix "etcd://" .Values.router.metastore) }}
{{- fail (printf "router.metastore must be etcd://host:port[,host:port], got %q: several routers cannot share a local:// file" .Values.router.metastore) }}
{{- end }}
{{- .Values.router.metastore }}
{{- else if .Values.etcd.enabled }}
{{- $members := list }}
{{- range $i, $_ := until (int .Values.etcd.replicas) }}
{{- $members = append $members (printf "%s-%d.%s.%s.svc:%d" (include "vdb.etcd.fullname" $) $i (include "vdb.etcd.headlessName" $) $.Release.Namespace (int $.Values.etcd.clientPort)) }}
{{- end }}
{{- printf "etcd://%s" (join "," $members) }}
{{- else }}
{{- fail "the routers need etcd: set etcd.enabled=true or router.metastore=etcd://host:port" }}
{{- end }}
{{- end }}

{{/* etcd objects. */}}
{{- define "vdb.etcd.fullname" -}}
{{- printf "%s-etcd" (include "vdb.fullname" .) }}
{{- end }}

{{- define "vdb.etcd.headlessName" -}}
{{- printf "%s-etcd-headless" (include "vdb.fullname" .) }}
{{- end }}

{{- define "vdb.etcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end }}

{{- define "vdb.etcd.labels" -}}
{{ include "vdb.labels" . }}
app.kubernetes.io/component: etcd
{{- end }}

{{/* "name-0=http://name-0.headless.ns.svc:2380,..." for --initial-cluster. */}}
{{- define "vdb.etcd.initialCluster" -}}
{{- $members := list }}
{{- range $i, $_ := until (int .Values.etcd.replicas) }}
{{- $pod := printf "%s-%d" (include "vdb.etcd.fullname" $) $i }}
{{- $members = append $members (printf "%s=http://%s.%s.%s.svc:%d" $pod $pod (include "vdb.etcd.headlessName" $) $.Release.Namespace (int $.Values.etcd.peerPort)) }}
{{- end }}
{{- join "," $members }}
{{- end }}
