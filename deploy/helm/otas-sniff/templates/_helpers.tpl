{{/* The chart's short name. */}}
{{- define "otas-sniff.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names: the release name alone when it already says otas-sniff. */}}
{{- define "otas-sniff.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "otas-sniff.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "otas-sniff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otas-sniff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "otas-sniff.labels" -}}
{{ include "otas-sniff.selectorLabels" . }}
app.kubernetes.io/part-of: otas-sniff
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "otas-sniff.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "otas-sniff.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding OTAS_SDK_KEY; one of the two values is required. */}}
{{- define "otas-sniff.secretName" -}}
{{- if .Values.sdkKey.existingSecret -}}
{{- .Values.sdkKey.existingSecret -}}
{{- else -}}
{{- $_ := required "set sdkKey.existingSecret (a Secret with key OTAS_SDK_KEY) or sdkKey.value" .Values.sdkKey.value -}}
{{- include "otas-sniff.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "otas-sniff.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
