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

{{- /* librdkafka settings of the agents' credential (kafka.auth). */ -}}
{{- define "driftwatch.agentKafka" -}}
{{- if eq .Values.kafka.auth "sasl" }}
security.protocol: SASL_SSL
sasl.mechanism: {{ .Values.kafka.saslMechanism }}
sasl.username: {{ .Values.kafka.agent.username | quote }}
{{- end }}
{{- if eq .Values.kafka.auth "mtls" }}
security.protocol: SSL
ssl.certificate.location: /etc/driftwatch/secrets/kafka-client.pem
ssl.key.location: /etc/driftwatch/secrets/kafka-client.key
{{- end }}
{{- if .Values.kafka.caPem }}
ssl.ca.location: /etc/driftwatch/secrets/kafka-ca.pem
{{- end }}
{{- if .Values.kafka.properties }}
{{ toYaml .Values.kafka.properties }}
{{- end }}
{{- end }}

{{- /* The same for the collectors' credential. */ -}}
{{- define "driftwatch.collectorKafka" -}}
{{- if eq .Values.kafka.auth "sasl" }}
security.protocol: SASL_SSL
sasl.mechanism: {{ .Values.kafka.saslMechanism }}
sasl.username: {{ .Values.kafka.collector.username | quote }}
{{- end }}
{{- if eq .Values.kafka.auth "mtls" }}
security.protocol: SSL
ssl.certificate.location: /etc/driftwatch/secrets/kafka-client.pem
ssl.key.location: /etc/driftwatch/secrets/kafka-client.key
{{- end }}
{{- if .Values.kafka.caPem }}
ssl.ca.location: /etc/driftwatch/secrets/kafka-ca.pem
{{- end }}
{{- if .Values.kafka.properties }}
{{ toYaml .Values.kafka.properties }}
{{- end }}
{{- end }}

{{- /* The SASL password, read from the role's Secret (never in a ConfigMap). */ -}}
{{- define "driftwatch.agentKafkaEnv" -}}
{{- if eq .Values.kafka.auth "sasl" }}
- name: DRIFTWATCH_AGENT__KAFKA__PROPERTIES__SASL.PASSWORD
  value: "{file: /etc/driftwatch/secrets/kafka-password}"
{{- end }}
{{- end }}

{{- define "driftwatch.collectorKafkaEnv" -}}
{{- if eq .Values.kafka.auth "sasl" }}
- name: DRIFTWATCH_COLLECTOR__KAFKA__PROPERTIES__SASL.PASSWORD
  value: "{file: /etc/driftwatch/secrets/kafka-password}"
{{- end }}
{{- end }}
