{{- define "driftwatch.labels" -}}
app.kubernetes.io/part-of: driftwatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "driftwatch.agentImage" -}}
{{ .Values.image.agent.repository }}:{{ .Values.image.agent.tag }}
{{- end }}

{{- define "driftwatch.collectorImage" -}}
{{ .Values.image.collector.repository }}:{{ .Values.image.collector.tag }}
{{- end }}

{{- define "driftwatch.kafkaEnv" -}}
{{- if .Values.kafka.saslPassword }}
- name: DRIFTWATCH_AGENT__KAFKA__PROPERTIES__SASL.PASSWORD
  value: "{file: /etc/driftwatch/secrets/kafka-password}"
{{- end }}
{{- end }}
