{{- define "kts.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kts.labels" -}}
app.kubernetes.io/name: konnectivity-ts
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kts.udsName" -}}
{{ .Values.server.frontend.udsDir }}/{{ .Values.server.frontend.udsName }}
{{- end -}}

{{- define "kts.tcp" -}}
{{- if eq .Values.server.frontend.transport "tcp" }}true{{ end -}}
{{- end -}}

{{- define "kts.agentProxyServerHost" -}}
{{- if .Values.agent.proxyServerHost -}}
{{ .Values.agent.proxyServerHost }}
{{- else if and .Values.server.enabled (include "kts.tcp" .) -}}
konnectivity-server.{{ .Release.Namespace }}.svc
{{- else -}}
{{ required "agent.proxyServerHost is required unless the server runs with server.frontend.transport=tcp" .Values.agent.proxyServerHost }}
{{- end -}}
{{- end -}}
