{{- /*
Labels of every object: (list $ "<component>"), component one of
node-agent, cluster-agent, collector, agent (the agents' Secret).
*/ -}}
{{- define "driftwatch.labels" -}}
{{- $ := index . 0 -}}
{{ include "driftwatch.selector" . }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: driftwatch
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version }}
{{- end }}

{{- /* The labels a component's selector matches: (list $ "<component>"). */ -}}
{{- define "driftwatch.selector" -}}
app.kubernetes.io/name: driftwatch-{{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end }}

{{- define "driftwatch.agentImage" -}}
{{ .Values.image.agent.repository }}:{{ .Values.image.agent.tag }}
{{- end }}

{{- define "driftwatch.collectorImage" -}}
{{ .Values.image.collector.repository }}:{{ .Values.image.collector.tag }}
{{- end }}

{{- /* The Secret a role's pods mount: (list $ "agent"|"collector"). */ -}}
{{- define "driftwatch.secretName" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- default (printf "%s-%s-secrets" $.Release.Name $role) (get $.Values.existingSecrets $role) -}}
{{- end }}

{{- /*
librdkafka settings of a role's credential (kafka.auth):
(list $ "agent"|"collector").
*/ -}}
{{- define "driftwatch.kafkaProperties" -}}
{{- $ := index . 0 -}}
{{- $credential := get $.Values.kafka (index . 1) -}}
{{- if eq $.Values.kafka.auth "sasl" }}
security.protocol: SASL_SSL
sasl.mechanism: {{ $.Values.kafka.saslMechanism }}
sasl.username: {{ $credential.username | quote }}
{{- end }}
{{- if eq $.Values.kafka.auth "mtls" }}
security.protocol: SSL
ssl.certificate.location: /etc/driftwatch/secrets/kafka-client.pem
ssl.key.location: /etc/driftwatch/secrets/kafka-client.key
{{- end }}
{{- if or $.Values.kafka.caPem $.Values.kafka.caInSecret }}
ssl.ca.location: /etc/driftwatch/secrets/kafka-ca.pem
{{- end }}
{{- if $.Values.kafka.properties }}
{{ toYaml $.Values.kafka.properties }}
{{- end }}
{{- end }}

{{- /*
The SASL password, read from the role's Secret (never in a ConfigMap):
(list $ "AGENT"|"COLLECTOR").
*/ -}}
{{- define "driftwatch.kafkaEnv" -}}
{{- if eq (index . 0).Values.kafka.auth "sasl" }}
- name: DRIFTWATCH_{{ index . 1 }}__KAFKA__PROPERTIES__SASL.PASSWORD
  value: "{file: /etc/driftwatch/secrets/kafka-password}"
{{- end }}
{{- end }}

{{- /*
A configuration file: the chart's settings (the YAML text `base`) with the
user's `config` merged over them (maps merge, lists replace):
(list "<base YAML>" <config>).
*/ -}}
{{- define "driftwatch.mergedConfig" -}}
{{- $base := fromYaml (index . 0) -}}
{{- if hasKey $base "Error" }}{{ fail (printf "the chart wrote an invalid configuration: %s" (get $base "Error")) }}{{ end -}}
{{- toYaml (mustMergeOverwrite $base (deepCopy (index . 1))) -}}
{{- end }}

{{- /* A role's Secret (rendered by secret.yaml, hashed by its pods). */ -}}
{{- define "driftwatch.agentSecret" -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-agent-secrets
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "driftwatch.labels" (list . "agent") | nindent 4 }}
type: Opaque
stringData:
  {{- if eq .Values.kafka.auth "sasl" }}
  kafka-password: {{ required "kafka.agent.password is required (kafka.auth is sasl: the agents' SASL password; or set kafka.auth to mtls or none, or name your Secret in existingSecrets.agent)" .Values.kafka.agent.password | quote }}
  {{- end }}
  {{- if eq .Values.kafka.auth "mtls" }}
  kafka-client.pem: {{ required "kafka.agent.certPem is required (kafka.auth is mtls: the agents' client certificate)" .Values.kafka.agent.certPem | quote }}
  kafka-client.key: {{ required "kafka.agent.keyPem is required (kafka.auth is mtls: the agents' client key)" .Values.kafka.agent.keyPem | quote }}
  {{- end }}
  {{- if .Values.kafka.caPem }}
  kafka-ca.pem: {{ .Values.kafka.caPem | quote }}
  {{- end }}
{{- end }}

{{- define "driftwatch.collectorSecret" -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-collector-secrets
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "driftwatch.labels" (list . "collector") | nindent 4 }}
type: Opaque
stringData:
  {{- if eq .Values.kafka.auth "sasl" }}
  kafka-password: {{ required "kafka.collector.password is required (kafka.auth is sasl: the collectors' SASL password; or set kafka.auth to mtls or none, or name your Secret in existingSecrets.collector)" .Values.kafka.collector.password | quote }}
  {{- end }}
  {{- if eq .Values.kafka.auth "mtls" }}
  kafka-client.pem: {{ required "kafka.collector.certPem is required (kafka.auth is mtls: the collectors' client certificate)" .Values.kafka.collector.certPem | quote }}
  kafka-client.key: {{ required "kafka.collector.keyPem is required (kafka.auth is mtls: the collectors' client key)" .Values.kafka.collector.keyPem | quote }}
  {{- end }}
  {{- if .Values.kafka.caPem }}
  kafka-ca.pem: {{ .Values.kafka.caPem | quote }}
  {{- end }}
  {{- if .Values.collector.clickhouse.password }}
  clickhouse-password: {{ .Values.collector.clickhouse.password | quote }}
  {{- end }}
  {{- if .Values.collector.clickhouse.caPem }}
  clickhouse-ca.pem: {{ .Values.collector.clickhouse.caPem | quote }}
  {{- end }}
  {{- if .Values.collector.clickhouse.reader.password }}
  clickhouse-reader-password: {{ .Values.collector.clickhouse.reader.password | quote }}
  {{- end }}
{{- end }}

{{- /*
A pod template's checksum annotations: its configuration and its role's
Secret (when the chart makes it), so a change rolls the pods:
(list $ "<configuration text>" "agent"|"collector").
*/ -}}
{{- define "driftwatch.checksums" -}}
{{- $ := index . 0 -}}
{{- $role := index . 2 -}}
checksum/config: {{ index . 1 | sha256sum }}
{{- if not (get $.Values.existingSecrets $role) }}
checksum/secret: {{ include (printf "driftwatch.%sSecret" $role) $ | sha256sum }}
{{- end }}
{{- end }}
