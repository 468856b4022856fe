{{/*
The chart's name, for the app.kubernetes.io/name label.
*/}}
{{- define "storeapi-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object of a release. At most 52 characters: the CronJob controller appends an
11-character suffix to name each Job, and a Job's name must fit a 63-character label value.
A release named like the chart (storeapi-exporter) gets the base's names, storeapi-exporter and
storeapi-exporter-auth; several releases in one namespace, one per cluster, need their own
release names or fullnameOverride.
*/}}
{{- define "storeapi-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "storeapi-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of the pods, and of every object: app.kubernetes.io/name and component as the base sets
them, so `kubectl logs -l app.kubernetes.io/name=storeapi-exporter` finds every release's pods;
instance tells the releases apart.
*/}}
{{- define "storeapi-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "storeapi-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cost-metrics-exporter
{{- end }}

{{- define "storeapi-exporter.labels" -}}
{{ include "storeapi-exporter.selectorLabels" . }}
helm.sh/chart: {{ include "storeapi-exporter.chart" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "storeapi-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "storeapi-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret the PROMETHEUS_* credentials are read from. Always referenced, every key optional,
as in the base: a missing Secret means no auth, and creating it later takes effect at the next
run without an upgrade.
*/}}
{{- define "storeapi-exporter.authSecretName" -}}
{{- default (printf "%s-auth" (include "storeapi-exporter.fullname" .)) .Values.existingSecret }}
{{- end }}

{{- define "storeapi-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{- define "storeapi-exporter.catalogPath" -}}
/etc/storeapi-exporter/catalog.yaml
{{- end }}

{{- define "storeapi-exporter.tlsPath" -}}
/etc/storeapi-exporter/tls
{{- end }}

{{/*
The TLS variables tls.existingSecret sets, as YAML (variable: the Secret's key): the keys of
tls that are not empty.
*/}}
{{- define "storeapi-exporter.tlsFiles" -}}
{{- $t := .Values.tls }}
{{- range $name, $key := dict "TLS_CA_FILE" $t.caKey "TLS_CERT_FILE" $t.certKey "TLS_KEY_FILE" $t.keyKey }}
{{- if $key }}
{{ $name }}: {{ $key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A duration as the exporter reads it (a number with s, m, h or d; a plain number is seconds), in
seconds. Only for the chart's own consistency checks.
*/}}
{{- define "storeapi-exporter.seconds" -}}
{{- $s := toString . | trim }}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 }}
{{- $unit := regexFind "[smhd]$" $s }}
{{- if $unit }}
{{- mul (atoi (trimSuffix $unit $s)) (get $units $unit) }}
{{- else }}
{{- atoi $s }}
{{- end }}
{{- end }}

{{/*
Relations between values that the schema cannot express; a render that breaks one fails with
the reason instead of producing a CronJob that misbehaves under a fault (README, "Faults").
*/}}
{{- define "storeapi-exporter.validate" -}}
{{- $v := .Values }}
{{- /* After SIGTERM the window in flight has SHUTDOWN_TIMEOUT, then the exporter exits within
5 s more (src/cli/budget.rs, EXIT_MARGIN); a grace period shorter than that SIGKILLs it before
it saved its state, and the uploads of that window are redone. */}}
{{- $shutdown := include "storeapi-exporter.seconds" (default "20s" $v.shutdownTimeout) | atoi }}
{{- if gt (add $shutdown 5) (int $v.terminationGracePeriodSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must cover shutdownTimeout (%ds) plus the exporter's 5 s to exit: raise it to at least %d or lower shutdownTimeout" $v.terminationGracePeriodSeconds $shutdown (add $shutdown 5)) }}
{{- end }}
{{- /* A run still going at the next slot makes concurrencyPolicy Forbid skip that slot. Only
the "every N minutes" form has a period we can read. */}}
{{- $every := regexFind "^\\*/[0-9]+ \\* \\* \\* \\*$" $v.schedule }}
{{- if $every }}
{{- $period := mul (atoi (regexFind "[0-9]+" $every)) 60 }}
{{- if ge (add $v.activeDeadlineSeconds $v.terminationGracePeriodSeconds) $period }}
{{- fail (printf "activeDeadlineSeconds (%v) + terminationGracePeriodSeconds (%v) must be less than the schedule's period (%d s): a run would still be ending at the next slot, which concurrencyPolicy Forbid then skips" $v.activeDeadlineSeconds $v.terminationGracePeriodSeconds $period) }}
{{- end }}
{{- end }}
{{- /* The chart sets these from its own values; a second entry of the same name would be
ambiguous (the API server keeps the last, kubectl and server-side apply disagree). */}}
{{- $owned := dict
  "S3_BUCKET" "s3.bucket" "S3_PREFIX" "s3.prefix" "CLUSTER_NAME" "clusterName"
  "CLUSTER_LABEL_NAME" "clusterLabel" "TIME_FRAME" "timeFrame" "BACKFILL_DAYS" "backfillDays"
  "STORE_ENDPOINT" "storeEndpoint" "RETENTION_DAYS" "retentionDays" "BATCH_DELAY" "batchDelay"
  "ABSENT_CLUSTER_GRACE" "absentClusterGrace" "SHUTDOWN_TIMEOUT" "shutdownTimeout"
  "LATE_DATA_GRACE" "lateDataGrace" "LATE_DATA_HORIZON" "lateDataHorizon"
  "TELEMETRY_PREFIX" "telemetryPrefix" "PUSHGATEWAY_URL" "pushgateway.url"
  "CATALOG_FILE" "catalog" "JOB_COMPLETIONS" "sharding" "SHARD" "sharding"
  "LOG_FORMAT" "(fixed: json, for log collectors)" "HOME" "(fixed: /tmp, the writable scratch volume)"
  "PROMETHEUS_AUTH_TOKEN" "existingSecret" "PROMETHEUS_BEARER_AUTH_TOKEN" "existingSecret"
  "PROMETHEUS_USERNAME" "existingSecret" "PROMETHEUS_PASSWORD" "existingSecret"
  "PROMETHEUS_X_SCOPE_ORGID" "existingSecret" }}
{{- if $v.tls.existingSecret }}
{{- range $name, $_ := include "storeapi-exporter.tlsFiles" . | fromYaml }}
{{- $_ := set $owned $name "tls.existingSecret" }}
{{- end }}
{{- if not (or $v.tls.caKey $v.tls.certKey $v.tls.keyKey) }}
{{- fail "tls.existingSecret names a Secret but tls.caKey, tls.certKey and tls.keyKey are all empty: name the keys to mount, or leave tls.existingSecret empty" }}
{{- end }}
{{- /* The exporter refuses a certificate without its key and the reverse. */}}
{{- if ne (empty $v.tls.certKey) (empty $v.tls.keyKey) }}
{{- fail (printf "tls.certKey (%q) and tls.keyKey (%q) go together: a client certificate needs its key; set both, or both to \"\" without mTLS" $v.tls.certKey $v.tls.keyKey) }}
{{- end }}
{{- end }}
{{- /* A second volume or mount of the same name is refused by the API server only at the
Job's creation, when every run fails to start. */}}
{{- range $v.extraVolumes }}
{{- if has .name (list "tmp" "catalog" "tls") }}
{{- fail (printf "extraVolumes: %s is the name of a volume of the chart's own (tmp, catalog, tls): name it differently" .name) }}
{{- end }}
{{- end }}
{{- $volumes := list "tmp" }}
{{- if $v.catalog }}{{ $volumes = append $volumes "catalog" }}{{ end }}
{{- if $v.tls.existingSecret }}{{ $volumes = append $volumes "tls" }}{{ end }}
{{- range $v.extraVolumes }}{{ $volumes = append $volumes .name }}{{ end }}
{{- range $v.extraVolumeMounts }}
{{- if not (has .name $volumes) }}
{{- fail (printf "extraVolumeMounts: %s names no volume: add it to extraVolumes" .name) }}
{{- end }}
{{- end }}
{{- /* The chart's own labels select its pods and name its release: never replaced. */}}
{{- range $name, $_ := $v.commonLabels | default dict }}
{{- if or (hasPrefix "app.kubernetes.io/" $name) (eq $name "helm.sh/chart") }}
{{- fail (printf "commonLabels: %s is one of the chart's own labels: choose another name" $name) }}
{{- end }}
{{- if and $v.prometheusRule.enabled (hasKey ($v.prometheusRule.labels | default dict) $name) }}
{{- fail (printf "commonLabels and prometheusRule.labels both set %s: set it in one of them" $name) }}
{{- end }}
{{- end }}
{{- /* Without pushed run metrics every alert is silent but StoreapiExporterNeverSucceeded,
which then always fires. */}}
{{- if and $v.prometheusRule.enabled (not $v.pushgateway.url) }}
{{- fail "prometheusRule.enabled needs pushgateway.url: the alerts read the run metrics the exporter pushes there" }}
{{- end }}
{{- $names := keys $v.env }}
{{- range $v.extraEnv }}
{{- $names = append $names .name }}
{{- end }}
{{- range $name := $names | sortAlpha }}
{{- if hasKey $owned $name }}
{{- fail (printf "%s is set by the chart from %s: set that value instead of env or extraEnv" $name (get $owned $name)) }}
{{- end }}
{{- end }}
{{- end }}
