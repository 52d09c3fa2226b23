module github.com/whatsapp-channels/controlplane/pause

go 1.24.0
